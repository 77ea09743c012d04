//! Streaming disk image format inspection, in bounded memory, and Glance's upload safety rules.
//!
//! An [`Inspector`] is fed the bytes of an upload in order, in chunks of any size, and tells at
//! the end ([`Inspector::finish`]) which format the data is in, the virtual disk size that
//! format declares, and which safety checks failed (a qcow2 naming a backing file, a VMDK whose
//! descriptor names other files, a differencing VHD, …). [`judge`] then applies Glance's rules:
//! whether the data may be stored under the declared `disk_format` / `container_format`.
//!
//! Formats: qcow2 (v2, v3), QED (always refused), VMDK (sparse and stream-optimized extents;
//! descriptor files are refused), VHD (dynamic/differencing at offset 0, fixed by its footer),
//! VHDX, VDI, ISO 9660 / UDF, MBR / GPT, LUKS and Parallels (ploop). Anything else is raw.
//!
//! Guarantees, for any byte sequence:
//! - no panic;
//! - the [`Report`] does not depend on how the stream was split into chunks: every parser asks
//!   for one byte range at a time and decides only from the bytes of the ranges it got;
//! - memory stays below [`MEMORY_BOUND`] ([`Inspector::retained_bytes`]): the largest buffer
//!   is a VMDK's embedded descriptor, capped at 1 MiB − 1 as in QEMU; the rest are headers,
//!   one VHDX table (< 64 KiB), the ISO volume descriptors (16 KiB) and the stream's last
//!   [`TAIL_LEN`] bytes.
//!
//! ```
//! use vela_inspect::{judge, Format, Inspector, Rules};
//!
//! let mut inspector = Inspector::new();
//! for chunk in [&[0u8; 1000][..], &[1u8; 24]] {
//!     inspector.feed(chunk);
//! }
//! let report = inspector.finish();
//! assert_eq!(report.format, Format::Raw);
//! let rules = Rules::default();
//! let accepted = judge(Some("raw"), Some("bare"), &report, &rules).expect("raw data");
//! assert_eq!(accepted.virtual_size, Some(1024));
//! let refused = judge(Some("qcow2"), Some("bare"), &report, &rules).expect_err("not qcow2");
//! assert_eq!(
//!     refused.to_string(),
//!     "Image disk_format qcow2 does not match stream data raw"
//! );
//! ```
//!
//! Structures are read forward only: one that would lie before data already passed (a VHDX
//! metadata region placed before its region table) makes the report's `error`.

#![warn(missing_docs)]

mod formats;
mod judge;
mod stream;

use std::fmt;
use std::io::Read;
use std::path::Path;

pub use judge::{judge, Accepted, Refusal, Rules};

use stream::Parser;

/// The most heap and inline memory an [`Inspector`] holds, whatever it is fed (1.5 MiB).
pub const MEMORY_BOUND: usize = 1536 * 1024;

/// How many bytes at the end of the stream are kept (the VMDK footer and end-of-stream marker
/// need three sectors; a fixed VHD's footer is the last one).
pub const TAIL_LEN: usize = 1536;

/// The VMDK `createType`s accepted by default.
pub const DEFAULT_VMDK_TYPES: &[&str] = &["streamOptimized", "monolithicSparse"];

/// A disk image format the inspector can recognise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// No other format matched: plain disk bytes.
    Raw,
    /// QEMU copy-on-write v2/v3.
    Qcow2,
    /// VMware virtual disk.
    Vmdk,
    /// Microsoft Virtual PC / Hyper-V (VHD, QEMU's `vpc`).
    Vhd,
    /// Microsoft Hyper-V VHDX.
    Vhdx,
    /// VirtualBox disk image.
    Vdi,
    /// ISO 9660 or UDF optical disc image.
    Iso,
    /// A disk with an MBR or GPT partition table.
    Gpt,
    /// LUKS encrypted volume.
    Luks,
    /// QEMU enhanced disk (always refused).
    Qed,
    /// Parallels / Virtuozzo ploop.
    Ploop,
}

impl Format {
    /// Every format, in report order.
    pub const ALL: [Format; 11] = [
        Format::Raw,
        Format::Qcow2,
        Format::Vmdk,
        Format::Vhd,
        Format::Vhdx,
        Format::Vdi,
        Format::Iso,
        Format::Gpt,
        Format::Luks,
        Format::Qed,
        Format::Ploop,
    ];

    /// The name, as Glance spells the `disk_format`.
    pub fn name(self) -> &'static str {
        match self {
            Format::Raw => "raw",
            Format::Qcow2 => "qcow2",
            Format::Vmdk => "vmdk",
            Format::Vhd => "vhd",
            Format::Vhdx => "vhdx",
            Format::Vdi => "vdi",
            Format::Iso => "iso",
            Format::Gpt => "gpt",
            Format::Luks => "luks",
            Format::Qed => "qed",
            Format::Ploop => "ploop",
        }
    }

    /// The format with this name (ASCII case-insensitive).
    pub fn from_name(name: &str) -> Option<Format> {
        Format::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One failed safety check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// A short name of the check: `backing_file`, `data_file`, `unknown_features`,
    /// `encryption`, `version`, `descriptor`, `extents`, `create_type`, `parent`, `footer`,
    /// `differencing`, `banned` or `mbr`.
    pub check: &'static str,
    /// Why it failed, for people.
    pub reason: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.check, self.reason)
    }
}

/// What the inspector found in a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The detected format ([`Format::Raw`] when nothing else matched; the first in report
    /// order when several did, see `multiple`).
    pub format: Format,
    /// The virtual disk size the detected format declares (raw, MBR/GPT: the byte count).
    pub virtual_size: Option<u64>,
    /// Bytes fed.
    pub size: u64,
    /// Safety-check failures of the detected format. VMDK `create_type` is checked here
    /// against [`DEFAULT_VMDK_TYPES`]; [`judge`] re-checks it against its [`Rules`].
    pub violations: Vec<Violation>,
    /// Every non-raw format that matched, when more than one did (ambiguous data, refused).
    /// ISO with an MBR/GPT (a hybrid ISO) counts as ISO alone.
    pub multiple: Vec<Format>,
    /// The virtual size of a fixed VHD: the last 512 bytes are a VHD footer of disk type
    /// fixed (`conectix`).
    pub vhd_footer_at_end: Option<u64>,
    /// The detected format's structure could not be parsed (e.g. a VHDX metadata region
    /// before the stream position).
    pub error: Option<String>,
    /// VMDK: the descriptor's `createType`, unquoted.
    pub vmdk_create_type: Option<String>,
}

/// A streaming inspector: feed it every byte in order, then [`finish`](Inspector::finish).
pub struct Inspector {
    parsers: Vec<Box<dyn Parser>>,
    size: u64,
    /// The last [`TAIL_LEN`] bytes, as a ring indexed by stream offset.
    tail: Box<[u8; TAIL_LEN]>,
}

impl fmt::Debug for Inspector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inspector")
            .field("size", &self.size)
            .field("retained_bytes", &self.retained_bytes())
            .finish_non_exhaustive()
    }
}

impl Default for Inspector {
    fn default() -> Self {
        Inspector::new()
    }
}

impl Inspector {
    /// An inspector at the start of a stream.
    pub fn new() -> Self {
        Inspector {
            parsers: formats::parsers(),
            size: 0,
            tail: Box::new([0; TAIL_LEN]),
        }
    }

    /// Takes the next chunk of the stream (any size, including empty).
    pub fn feed(&mut self, chunk: &[u8]) {
        let pos = self.size;
        for p in &mut self.parsers {
            p.feed(pos, chunk);
        }
        let skip = chunk.len().saturating_sub(TAIL_LEN);
        let mut at = pos.saturating_add(skip as u64);
        let mut rest = chunk.get(skip..).unwrap_or_default();
        // At most two copies: up to the end of the ring, then from its start.
        while !rest.is_empty() {
            let idx = (at % TAIL_LEN as u64) as usize;
            let n = rest.len().min(TAIL_LEN - idx);
            let (now, later) = rest.split_at(n);
            if let Some(slots) = self.tail.get_mut(idx..idx + n) {
                slots.copy_from_slice(now);
            }
            rest = later;
            at = at.saturating_add(n as u64);
        }
        self.size = self.size.saturating_add(chunk.len() as u64);
    }

    /// Bytes fed so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The memory the inspector holds now: buffers, parsers and itself. Always below
    /// [`MEMORY_BOUND`].
    pub fn retained_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + TAIL_LEN
            + self.parsers.capacity() * std::mem::size_of::<Box<dyn Parser>>()
            + self.parsers.iter().map(|p| p.retained()).sum::<usize>()
    }

    /// The last bytes of the stream, in order.
    fn tail(&self) -> Vec<u8> {
        let n = self.size.min(TAIL_LEN as u64);
        (self.size - n..self.size)
            .map(|i| {
                self.tail
                    .get((i % TAIL_LEN as u64) as usize)
                    .copied()
                    .unwrap_or(0)
            })
            .collect()
    }

    /// Ends the stream and reports.
    pub fn finish(mut self) -> Report {
        let tail = self.tail();
        let size = self.size;
        for p in &mut self.parsers {
            p.finish(size, &tail);
        }
        let mut matched: Vec<&mut Box<dyn Parser>> = self
            .parsers
            .iter_mut()
            .filter(|p| p.outcome().matched)
            .collect();
        let mut formats: Vec<Format> = matched.iter().map(|p| p.format()).collect();
        formats.dedup();
        let hybrid_iso =
            formats.len() == 2 && formats.contains(&Format::Iso) && formats.contains(&Format::Gpt);
        if hybrid_iso {
            matched.retain(|p| p.format() == Format::Iso);
            formats.retain(|&f| f == Format::Iso);
        }
        let start = tail.len().saturating_sub(512);
        let vhd_footer_at_end = formats::fixed_footer_size(tail.get(start..).unwrap_or_default());
        let mut report = Report {
            format: Format::Raw,
            virtual_size: Some(size),
            size,
            violations: Vec::new(),
            multiple: if formats.len() > 1 {
                formats
            } else {
                Vec::new()
            },
            vhd_footer_at_end,
            error: None,
            vmdk_create_type: None,
        };
        if let Some(first) = matched.into_iter().next() {
            let out = first.take_outcome();
            report.format = first.format();
            report.virtual_size = out.virtual_size;
            report.violations = out.violations;
            report.error = out.error;
            report.vmdk_create_type = out.create_type;
        }
        report
    }
}

/// Inspects a whole file, read in 1 MiB chunks.
pub fn inspect_file(path: &Path) -> std::io::Result<Report> {
    let mut file = std::fs::File::open(path)?;
    let mut inspector = Inspector::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => inspector.feed(buf.get(..n).unwrap_or_default()),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(inspector.finish())
}

#[cfg(test)]
pub(crate) mod testutil {
    use super::{Inspector, Report};

    /// Inspects `data` fed whole, byte by byte and in odd chunks, checking all agree.
    pub(crate) fn inspect(data: &[u8]) -> Report {
        let whole = feed(data, &[data.len().max(1)]);
        for sizes in [&[1usize][..], &[7, 512, 3], &[4096, 1, 65536]] {
            // Byte by byte only for small inputs (cost).
            if sizes == [1] && data.len() > 300_000 {
                continue;
            }
            assert_eq!(feed(data, sizes), whole, "chunk sizes {sizes:?}");
        }
        whole
    }

    /// Feeds `data` in chunks of the given sizes, cycling.
    pub(crate) fn feed(data: &[u8], sizes: &[usize]) -> Report {
        let mut i = Inspector::new();
        let mut rest = data;
        let mut k = 0;
        while !rest.is_empty() {
            let n = sizes[k % sizes.len()].min(rest.len());
            let (a, b) = rest.split_at(n);
            i.feed(a);
            rest = b;
            k += 1;
        }
        i.finish()
    }

    /// The names of the failed checks.
    pub(crate) fn checks(r: &Report) -> Vec<&'static str> {
        r.violations.iter().map(|v| v.check).collect()
    }
}

#[cfg(test)]
mod tests;
