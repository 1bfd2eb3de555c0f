//! The two kinds of receiver behind one call: the HTTP receiver (PUT,
//! confirmed refusals) and an S3-compatible object store. Both end in the
//! same [`Verdict`], so the state machine, the host pause, the journal
//! fields, doctor and metrics work alike for both.

use crate::config::Config;
use crate::layout::{EpisodeId, MultipartProgress, RetryState};
use crate::machine::host::Contact;
use crate::outcome::{Verdict, classify, needs_confirmation};
use crate::transport::s3::S3Transport;
use crate::transport::{SetupError, Transport, TransportError, Upload};

use super::{Observer, Shipper};

pub(super) enum Receiver {
    Http(Box<Transport>),
    S3(Box<S3Transport>),
}

impl Receiver {
    pub fn new(config: &Config) -> Result<Receiver, SetupError> {
        let stall = config.shipper.request_timeout;
        let rate = config.shipper.upload_rate_limit.clone();
        Ok(match &config.receiver.s3 {
            Some(s3) => Receiver::S3(Box::new(
                S3Transport::new(&config.receiver, s3, stall)?.with_rate_limit(rate),
            )),
            None => Receiver::Http(Box::new(
                Transport::new(&config.receiver, stall)?.with_rate_limit(rate),
            )),
        })
    }

    pub fn check_client_cert(&self, now: u64) -> Result<(), SetupError> {
        match self {
            Receiver::Http(t) => t.check_client_cert(now),
            Receiver::S3(_) => Ok(()),
        }
    }
}

impl Shipper {
    /// Send the staged archive and judge the answer: the verdict, and
    /// whether a failure was our own (cancelled, archive unreadable), which
    /// says nothing about the receiver.
    pub(super) fn upload(
        &self,
        upload: &Upload<'_>,
        retry: &mut RetryState,
        observer: &mut dyn Observer,
    ) -> (Verdict, Contact) {
        let id = upload.episode_id;
        match &self.receiver {
            Receiver::Http(t) => self.upload_http(t, upload, observer),
            Receiver::S3(s3) => {
                let mut state = retry.multipart.take();
                let layout = &self.layout;
                let before = retry.clone();
                let mut persist = |s: &Option<MultipartProgress>| {
                    let mut r = before.clone();
                    r.multipart = s.clone();
                    if let Err(e) = r.store(layout, id) {
                        tracing::warn!(EPISODE_ID = %id, "cannot record the upload's progress: {e}");
                    }
                };
                let attempt = s3.ship(upload, &mut state, &mut persist, &self.cancel, &mut |p| {
                    observer.uploading(id, p)
                });
                retry.multipart = state;
                tracing::debug!(
                    EPISODE_ID = %id,
                    "{} of the archive's {} bytes sent in this attempt",
                    attempt.sent,
                    upload.bytes
                );
                (attempt.verdict, attempt.contact)
            }
        }
    }

    fn upload_http(
        &self,
        transport: &Transport,
        upload: &Upload<'_>,
        observer: &mut dyn Observer,
    ) -> (Verdict, Contact) {
        let id: &EpisodeId = upload.episode_id;
        let result = transport.put(upload, &self.cancel, &mut |p| observer.uploading(id, p));
        // A refusal counts only when the receiver made it: ask again
        // without a body before deciding (see `outcome::confirmed`).
        let check =
            needs_confirmation(&result).then(|| transport.confirm(&self.host_id, id, &self.cancel));
        if let (Ok(put), Some(check)) = (&result, &check) {
            let answer = match &check.result {
                Ok(head) => format!("answered {}", head.status),
                Err(e) => format!("got no answer: {e}"),
            };
            tracing::info!(
                EPISODE_ID = %id,
                "HTTP {} to the upload; confirming: {} {answer}",
                put.status,
                check.request
            );
        }
        let verdict = classify(&result, &upload.sha256, check.as_ref());
        // Our own failures (cancelled, the staged archive unreadable) say
        // nothing about the receiver.
        let cancelled_check = check
            .as_ref()
            .is_some_and(|c| matches!(c.result, Err(TransportError::Cancelled)));
        let contact = match &result {
            _ if cancelled_check => Contact::Local,
            Err(e) => e.contact(),
            Ok(_) => Contact::Reached,
        };
        (verdict, contact)
    }
}
