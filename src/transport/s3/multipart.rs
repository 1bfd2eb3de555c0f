//! The multipart path of [`S3Transport::ship`]: create or resume (checked
//! against `ListParts`), one part at a time with its checksum, recorded
//! after each, then the completion (create-only).

use std::io::{Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::sync::atomic::AtomicBool;

use rusty_s3::S3Action;

use crate::layout::{MultipartProgress, UploadedPart};
use crate::outcome::Verdict;
use crate::transport::{Progress, StreamedBody, TransportError, Upload};

use super::classify::{
    self, ErrorKind, S3Error, existing_object, is_error_document, kind_of, verdict_of,
};
use super::plan::{self, ListedPart, ResumePlan, complete_body, part_ranges, plan_resume};
use super::request::{Answer, Body, Req};
use super::{
    Probe, S3Transport, Stop, UNSIGNED, archive_error, b64, no_progress, open_archive,
    transient_restart,
};

impl S3Transport {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn put_multipart(
        &self,
        key: &str,
        upload: &Upload<'_>,
        state: &mut Option<MultipartProgress>,
        persist: &mut dyn FnMut(&Option<MultipartProgress>),
        cancel: &AtomicBool,
        on_progress: &mut dyn FnMut(Progress),
        sent: &mut u64,
    ) -> Result<Verdict, Stop> {
        let id = upload.episode_id;
        let ours = crate::ship::hex(&upload.sha256);
        let part_size = plan::effective_part_size(upload.bytes, self.part_size);
        let ranges = part_ranges(upload.bytes, part_size);
        if let Some(mp) = state.as_ref()
            && !plan::resumable(mp, key, &ours, part_size)
        {
            tracing::info!(EPISODE_ID = %id, "the recorded multipart upload is for another archive: aborting it");
            if let Err(e) = self.abort(mp, cancel) {
                tracing::warn!(EPISODE_ID = %id, "{e}");
            }
            *state = None;
            persist(state);
        }
        let fresh = ResumePlan {
            keep: Vec::new(),
            missing: ranges.clone(),
        };
        let plan = match state.as_ref() {
            None => fresh,
            Some(mp) => match self.list_parts(mp, cancel)? {
                Some(listed) => plan_resume(mp, &listed, &ranges),
                None => {
                    tracing::warn!(
                        EPISODE_ID = %id,
                        "the store no longer knows multipart upload {}: starting over",
                        mp.upload_id
                    );
                    *state = None;
                    persist(state);
                    fresh
                }
            },
        };
        match state.as_mut() {
            Some(mp) => {
                mp.parts = plan.keep.clone();
                persist(state);
                tracing::info!(
                    EPISODE_ID = %id,
                    "resuming multipart upload: {} of {} parts ({} bytes) already on the store, \
                     {} to send",
                    plan.keep.len(),
                    ranges.len(),
                    plan::kept_bytes(&plan),
                    plan.missing.len()
                );
            }
            None => {
                let upload_id = self.create(key, &ours, cancel)?;
                *state = Some(MultipartProgress {
                    key: key.to_string(),
                    upload_id,
                    part_size,
                    archive_sha256: ours.clone(),
                    parts: Vec::new(),
                });
                persist(state);
            }
        }
        let mut done = plan::kept_bytes(&plan);
        for range in &plan.missing {
            let Some(mp) = state.as_mut() else { break };
            let (part, answer) = self.upload_part(upload, mp, *range, done, cancel, on_progress)?;
            *sent += range.len - answer.unsent;
            match part {
                Some(part) => {
                    mp.parts.push(part);
                    persist(state);
                    done += range.len;
                }
                None => return Err(self.part_failed(state, persist, &answer, cancel)),
            }
        }
        if state.is_none() {
            return Ok(transient_restart("the multipart upload was lost"));
        }
        // Stores that ignore If-None-Match would overwrite: look first.
        if let Probe::Exists { meta_sha256, check } = self.probe(key, cancel)? {
            return Ok(existing_object(meta_sha256.as_deref(), &ours, check));
        }
        self.complete(key, &ours, state, persist, cancel)
    }

    /// One part: its SHA-256 first (sent as its checksum), then the `PUT`.
    /// `None` when the store did not acknowledge it.
    fn upload_part(
        &self,
        upload: &Upload<'_>,
        mp: &MultipartProgress,
        range: plan::PartRange,
        before: u64,
        cancel: &AtomicBool,
        on_progress: &mut dyn FnMut(Progress),
    ) -> Result<(Option<UploadedPart>, Answer), Stop> {
        let mut file = open_archive(upload)?;
        let sha256 =
            b64(&hash_range(&file, range.offset, range.len).map_err(archive_error(upload))?);
        file.seek(SeekFrom::Start(range.offset))
            .map_err(archive_error(upload))?;
        let number = u16::try_from(range.number)
            .map_err(|_| TransportError::Protocol(format!("part number {}", range.number)))?;
        let url = self
            .bucket
            .upload_part(None, &mp.key, number, &mp.upload_id)
            .sign(UNSIGNED);
        let total = upload.bytes;
        let answer = self.request(
            Req {
                method: reqwest::Method::PUT,
                url,
                headers: vec![("x-amz-checksum-sha256", sha256.clone())],
                body: Body::File(StreamedBody {
                    file,
                    bytes: range.len,
                }),
            },
            cancel,
            &mut |p: Progress| {
                on_progress(Progress {
                    sent: before + p.sent,
                    total,
                    moved: p.moved,
                })
            },
        )?;
        let part = match (&answer.etag, answer.status) {
            (Some(etag), 200..=299) if answer.unsent == 0 => Some(UploadedPart {
                number: range.number,
                etag: etag.clone(),
                sha256,
                size: range.len,
            }),
            _ => None,
        };
        Ok((part, answer))
    }

    /// A part the store did not take: the verdict, after forgetting an
    /// upload the store no longer has.
    fn part_failed(
        &self,
        state: &mut Option<MultipartProgress>,
        persist: &mut dyn FnMut(&Option<MultipartProgress>),
        answer: &Answer,
        cancel: &AtomicBool,
    ) -> Stop {
        if (200..300).contains(&answer.status) {
            return Stop::Verdict(Verdict::Transient {
                status: Some(answer.status),
                reason: format!(
                    "the store answered {} to a part without an ETag (or before taking all of \
                     it): not counted",
                    answer.status
                ),
                retry_after: None,
            });
        }
        let err = S3Error::parse(answer.status, &answer.body);
        match kind_of(&err) {
            ErrorKind::UploadGone | ErrorKind::PartsRejected => {
                self.forget(state, persist, cancel);
                Stop::Verdict(transient_restart(&err.reason()))
            }
            _ => Stop::Verdict(verdict_of(&err)),
        }
    }

    /// Abort the recorded upload (best effort) and forget it.
    fn forget(
        &self,
        state: &mut Option<MultipartProgress>,
        persist: &mut dyn FnMut(&Option<MultipartProgress>),
        cancel: &AtomicBool,
    ) {
        if let Some(mp) = state.take() {
            let _ = self.abort(&mp, cancel);
            persist(state);
        }
    }

    fn create(&self, key: &str, ours: &str, cancel: &AtomicBool) -> Result<String, Stop> {
        let url = self
            .bucket
            .create_multipart_upload(None, key)
            .sign(UNSIGNED);
        let answer = self.request(
            Req {
                method: reqwest::Method::POST,
                url,
                headers: vec![
                    ("content-type", "application/gzip".into()),
                    ("x-amz-checksum-algorithm", "SHA256".into()),
                    ("x-amz-meta-sha256", ours.to_string()),
                ],
                // An empty body, so that a Content-Length: 0 goes with it.
                body: Body::Bytes(Vec::new()),
            },
            cancel,
            &mut no_progress,
        )?;
        if !(200..300).contains(&answer.status) {
            return Err(Stop::Verdict(verdict_of(&S3Error::parse(
                answer.status,
                &answer.body,
            ))));
        }
        classify::parse_upload_id(&answer.body)
            .map_err(|e| Stop::Transport(TransportError::Protocol(e)))
    }

    /// Every part the store has for the upload; `None`: it forgot it.
    fn list_parts(
        &self,
        mp: &MultipartProgress,
        cancel: &AtomicBool,
    ) -> Result<Option<Vec<ListedPart>>, Stop> {
        let mut listed = Vec::new();
        let mut marker = None;
        loop {
            let mut action = self.bucket.list_parts(None, &mp.key, &mp.upload_id);
            if let Some(m) = marker {
                action.set_part_number_marker(m);
            }
            let answer = self.request(
                Req {
                    method: reqwest::Method::GET,
                    url: action.sign(UNSIGNED),
                    headers: Vec::new(),
                    body: Body::None,
                },
                cancel,
                &mut no_progress,
            )?;
            if !(200..300).contains(&answer.status) {
                let err = S3Error::parse(answer.status, &answer.body);
                return match kind_of(&err) {
                    ErrorKind::UploadGone => Ok(None),
                    _ => Err(Stop::Verdict(verdict_of(&err))),
                };
            }
            let (page, next) = classify::parse_list_parts(&answer.body)
                .map_err(|e| Stop::Transport(TransportError::Protocol(e)))?;
            listed.extend(page);
            match next.and_then(|m| u16::try_from(m).ok()) {
                Some(m) => marker = Some(m),
                None => return Ok(Some(listed)),
            }
        }
    }

    fn complete(
        &self,
        key: &str,
        ours: &str,
        state: &mut Option<MultipartProgress>,
        persist: &mut dyn FnMut(&Option<MultipartProgress>),
        cancel: &AtomicBool,
    ) -> Result<Verdict, Stop> {
        let Some(mp) = state.as_ref() else {
            return Ok(transient_restart("the multipart upload was lost"));
        };
        let url = self
            .bucket
            .complete_multipart_upload(None, key, &mp.upload_id, std::iter::empty())
            .sign(UNSIGNED);
        let answer = self.request(
            Req {
                method: reqwest::Method::POST,
                url,
                headers: vec![
                    ("content-type", "application/xml".into()),
                    ("if-none-match", "*".into()),
                ],
                body: Body::Bytes(complete_body(&mp.parts).into_bytes()),
            },
            cancel,
            &mut no_progress,
        )?;
        let ok = (200..300).contains(&answer.status) && !is_error_document(&answer.body);
        if ok {
            // Completed: the upload id is spent.
            *state = None;
            persist(state);
            return Ok(Verdict::Shipped {
                status: answer.status,
            });
        }
        // A 200 whose body is an error: S3 reports it as its code says.
        let status = if answer.status < 300 {
            500
        } else {
            answer.status
        };
        let err = S3Error::parse(status, &answer.body);
        match kind_of(&err) {
            ErrorKind::Exists => {
                self.forget(state, persist, cancel);
                self.after_exists(key, ours, cancel)
            }
            ErrorKind::UploadGone | ErrorKind::PartsRejected => {
                self.forget(state, persist, cancel);
                Ok(transient_restart(&err.reason()))
            }
            _ => Ok(verdict_of(&err)),
        }
    }
}

/// SHA-256 of `len` bytes at `offset`.
fn hash_range(file: &std::fs::File, offset: u64, len: u64) -> std::io::Result<[u8; 32]> {
    let mut hash = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    while done < len {
        let want = buf.len().min((len - done) as usize);
        let n = file.read_at(&mut buf[..want], offset + done)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "staged archive is shorter than expected",
            ));
        }
        hash.update(&buf[..n]);
        done += n as u64;
    }
    hash.finish()
        .as_ref()
        .try_into()
        .map_err(|_| std::io::Error::other("SHA-256 digest is not 32 bytes"))
}
