//! The upload body: the staged archive read into a one-chunk channel, so
//! that when the answer arrives the connection has taken at most one chunk
//! more than we know of (a 2xx before the whole body counts for nothing).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::bandwidth::Throttle;

use super::UPLOAD_CHUNK;

pub(super) type Chunk = Result<Vec<u8>, std::io::Error>;

/// Read the staged archive into the body channel, one chunk at a time.
/// Reads block briefly on local disk, which is acceptable on this
/// dedicated runtime. Ends early when the connection drops the body.
pub(super) async fn feed_body(
    mut file: std::fs::File,
    total: u64,
    chunks: tokio::sync::mpsc::Sender<Chunk>,
    mut throttle: Option<&mut Throttle>,
) {
    use std::io::Read;
    let mut done = 0u64;
    while done < total {
        // Paced: never more than the bucket holds, so a throttled upload
        // still moves a few times a second (no stall, heartbeats go on).
        let room = UPLOAD_CHUNK.min((total - done) as usize);
        let want = match throttle.as_deref_mut() {
            Some(t) => {
                let len = t.chunk_len(room);
                t.admit(len).await;
                len
            }
            None => room,
        };
        let mut buf = vec![0u8; want];
        let chunk = match file.read(&mut buf) {
            Ok(0) => Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "staged archive is shorter than expected",
            )),
            Ok(n) => {
                buf.truncate(n);
                done += n as u64;
                Ok(buf)
            }
            Err(e) => Err(e),
        };
        let failed = chunk.is_err();
        if chunks.send(chunk).await.is_err() || failed {
            return;
        }
    }
}

/// The body as the connection sees it: the chunks from the channel,
/// counting what it has taken.
pub(super) fn body_stream(
    pending: tokio::sync::mpsc::Receiver<Chunk>,
    taken: Arc<AtomicU64>,
) -> impl futures_util::Stream<Item = Chunk> + Send + 'static {
    futures_util::stream::unfold(pending, move |mut pending| {
        let taken = taken.clone();
        async move {
            let chunk = pending.recv().await?;
            if let Ok(bytes) = &chunk {
                taken.fetch_add(bytes.len() as u64, Ordering::Relaxed);
            }
            Some((chunk, pending))
        }
    })
}
