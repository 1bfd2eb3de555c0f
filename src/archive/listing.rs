//! A directory's entries in byte order, in memory that does not grow with
//! the number of entries.
//!
//! Sorting a listing needs all of its names at once: 100,000 camera frames
//! are megabytes of names. So the listing is read in passes over the open
//! directory. Each pass keeps the smallest names after the ones already
//! handed out, within [`BUDGET`] bytes: when the budget is reached, the
//! largest eighth is dropped and the pass ignores anything larger from
//! then on. A directory that fits (nearly all) is read once, as before;
//! 100,000 frames take 3 passes (about 25 ms of `getdents` each on tmpfs).
//! Each name is handed out once, in order, even if the directory changes
//! between passes.

use std::cmp::Ordering;
use std::ffi::CStr;
use std::io;
use std::os::fd::AsFd;

use rustix::fs::{Dir, FileType};

/// Bytes of names (and of their index) one pass holds at most: about
/// 45,000 names of camera frames.
pub(super) const BUDGET: usize = 1024 * 1024;

/// The entries, a batch at a time: [`Self::next_batch`], then
/// [`Self::entries`].
pub(super) struct SortedListing {
    dir: Dir,
    budget: usize,
    /// The largest name handed out so far (empty: none; names never are).
    last: Vec<u8>,
    /// Whether a pass has not yet been made, or the last one dropped names.
    more: bool,
    /// This pass's entries, each `[file type][length][name][NUL]`.
    packed: Vec<u8>,
    /// Where each entry starts in `packed`.
    index: Vec<u32>,
}

impl SortedListing {
    pub(super) fn new(dir: impl AsFd) -> io::Result<Self> {
        Self::with_budget(dir, BUDGET)
    }

    fn with_budget(dir: impl AsFd, budget: usize) -> io::Result<Self> {
        Ok(SortedListing {
            dir: Dir::read_from(dir)?,
            budget,
            last: Vec::new(),
            more: true,
            packed: Vec::new(),
            index: Vec::new(),
        })
    }

    /// Read the next batch; false when every entry has been handed out.
    pub(super) fn next_batch(&mut self) -> io::Result<bool> {
        self.packed.clear();
        self.index.clear();
        if !self.more {
            return Ok(false);
        }
        self.dir.rewind();
        // Names above this are left for a later pass.
        let mut cutoff: Option<Vec<u8>> = None;
        while let Some(entry) = self.dir.read() {
            let entry = entry?;
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." || name <= &self.last[..] {
                continue;
            }
            if cutoff.as_deref().is_some_and(|c| name > c) {
                continue;
            }
            let start = u32::try_from(self.packed.len())
                .map_err(|_| io::Error::other("directory listing over 4 GiB"))?;
            // Names are at most 255 bytes (NAME_MAX).
            let len = u8::try_from(name.len())
                .map_err(|_| io::Error::other("file name longer than 255 bytes"))?;
            self.index.push(start);
            self.packed
                .push((entry.file_type().as_raw_mode() >> 12) as u8);
            self.packed.push(len);
            self.packed.extend_from_slice(name);
            self.packed.push(0);
            if self.packed.len() + 4 * self.index.len() > self.budget {
                cutoff = Some(self.drop_largest());
            }
        }
        let packed = &self.packed;
        self.index
            .sort_unstable_by(|&a, &b| name_at(packed, a).cmp(name_at(packed, b)));
        self.more = cutoff.is_some();
        if let Some(&largest) = self.index.last() {
            self.last.clear();
            self.last.extend_from_slice(name_at(&self.packed, largest));
        }
        Ok(!self.index.is_empty())
    }

    /// This batch's entries, in byte order of their names.
    pub(super) fn entries(&self) -> impl Iterator<Item = io::Result<(&CStr, FileType)>> {
        self.index.iter().map(|&at| {
            let at = at as usize;
            let len = usize::from(self.packed[at + 1]);
            let name = CStr::from_bytes_with_nul(&self.packed[at + 2..at + 3 + len])
                .map_err(io::Error::other)?;
            let kind = FileType::from_raw_mode(u32::from(self.packed[at]) << 12);
            Ok((name, kind))
        })
    }

    /// Keep the smallest seven eighths of the entries (packed again), and
    /// return the largest name kept. Dropping little makes for few passes
    /// however the directory orders its entries (tmpfs: newest first).
    fn drop_largest(&mut self) -> Vec<u8> {
        let keep = (self.index.len() * 7 / 8).max(1);
        let packed = &self.packed;
        let by_name =
            |a: &u32, b: &u32| -> Ordering { name_at(packed, *a).cmp(name_at(packed, *b)) };
        self.index.select_nth_unstable_by(keep - 1, by_name);
        let largest = name_at(&self.packed, self.index[keep - 1]).to_vec();
        self.index.truncate(keep);
        // Slide the kept entries down, in the order they are stored.
        self.index.sort_unstable();
        let mut to = 0usize;
        for at in self.index.iter_mut() {
            let from = *at as usize;
            let size = 3 + usize::from(self.packed[from + 1]);
            self.packed.copy_within(from..from + size, to);
            *at = to as u32;
            to += size;
        }
        self.packed.truncate(to);
        largest
    }
}

fn name_at(packed: &[u8], at: u32) -> &[u8] {
    let at = at as usize;
    &packed[at + 2..at + 2 + usize::from(packed[at + 1])]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(dir: &std::path::Path, budget: usize) -> (Vec<(String, FileType)>, usize) {
        let fd = std::fs::File::open(dir).expect("open");
        let mut listing = SortedListing::with_budget(&fd, budget).expect("listing");
        let (mut all, mut batches) = (Vec::new(), 0);
        while listing.next_batch().expect("batch") {
            batches += 1;
            for entry in listing.entries() {
                let (name, kind) = entry.expect("entry");
                all.push((name.to_str().expect("utf-8").to_owned(), kind));
            }
            assert!(
                listing.packed.capacity() <= 2 * budget,
                "grew past the budget"
            );
        }
        (all, batches)
    }

    #[test]
    fn every_entry_once_in_byte_order_within_the_budget() {
        let d = tempfile::tempdir().expect("tempdir");
        let mut expected = Vec::new();
        // Names of every length, created in no particular order.
        for i in (0..3000u32).map(|i| (i * 7919) % 3000) {
            let name = format!("{}{i}", "f".repeat((i % 200) as usize));
            std::fs::write(d.path().join(&name), b"").expect("write");
            expected.push((name, FileType::RegularFile));
        }
        std::fs::create_dir(d.path().join("B-dir")).expect("mkdir");
        expected.push(("B-dir".into(), FileType::Directory));
        expected.sort_by(|a, b| a.0.cmp(&b.0));
        let (all, batches) = listed(d.path(), 16 * 1024);
        assert_eq!(all, expected);
        assert!(batches > 5, "{batches} batches: the budget was not used");
        let (all, batches) = listed(d.path(), BUDGET);
        assert_eq!((all, batches), (expected, 1));
    }

    #[test]
    fn an_empty_directory_has_no_batch() {
        let d = tempfile::tempdir().expect("tempdir");
        assert_eq!(listed(d.path(), BUDGET), (Vec::new(), 0));
    }
}
