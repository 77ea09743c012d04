//! QEMU copy-on-write v2/v3 (`qcow2`) and the banned QEMU enhanced disk (`qed`).
//!
//! qcow2 header (big-endian): magic `QFI\xfb`, version u32 @4, backing_file_offset u64 @8,
//! cluster_bits u32 @20, size u64 @24, crypt_method u32 @32; version 3 adds
//! incompatible_features u64 @72 and header_length u32 @100. Header extensions (u32 type,
//! u32 length, data padded to 8 bytes) follow the header and end with type 0 or at the end of
//! the first cluster, as QEMU reads them.

use crate::stream::{be32, be64, has, le64, Outcome, Stage, Want};
use crate::Format;

const MAGIC: &[u8] = b"QFI\xfb";
/// Incompatible feature bit 2: guest data lives in an external data file.
const INCOMPAT_DATA_FILE: u64 = 1 << 2;
/// Incompatible feature bits QEMU knows (dirty, corrupt, data file, compression type,
/// extended L2 entries).
const INCOMPAT_KNOWN: u64 = 0x1f;
/// Header extension naming the external data file.
const EXT_DATA_FILE: u32 = 0x4441_5441;
/// Length of the version 2 header (and the start of the version 3 fields).
const V2_LEN: usize = 72;
/// Length of the version 3 header QEMU requires.
const V3_LEN: u64 = 104;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Header,
    V3Fields,
    Extension,
}

/// The qcow2 parser.
pub(crate) struct Qcow2 {
    out: Outcome,
    step: Step,
    /// End of the first cluster: header extensions stop there.
    ext_end: u64,
}

impl Qcow2 {
    /// A parser waiting for the header.
    pub(crate) fn new() -> Self {
        Qcow2 {
            out: Outcome::default(),
            step: Step::Header,
            ext_end: 0,
        }
    }

    /// The first extension header at `off`, if it fits in the first cluster.
    fn extension_at(&mut self, off: u64) -> Option<Want> {
        self.step = Step::Extension;
        (off.checked_add(8)? <= self.ext_end).then(|| Want::new(off, 8))
    }
}

impl Stage for Qcow2 {
    fn format(&self) -> Format {
        Format::Qcow2
    }

    fn start(&self) -> Want {
        Want::new(0, V2_LEN)
    }

    fn step(&mut self, d: &[u8], end: u64) -> Option<Want> {
        match self.step {
            Step::Header => {
                if !has(d, 0, MAGIC) {
                    return None;
                }
                let out = &mut self.out;
                out.matched = true;
                out.virtual_size = Some(be64(d, 24));
                let version = be32(d, 4);
                if be64(d, 8) != 0 {
                    out.violate("backing_file", "qcow2 image names a backing file");
                }
                if be32(d, 32) != 0 {
                    out.violate("encryption", "qcow2 image is encrypted");
                }
                let cluster_bits = be32(d, 20);
                if !(9..=21).contains(&cluster_bits) {
                    out.fail(format!("qcow2 cluster_bits {cluster_bits} out of range"));
                    return None;
                }
                self.ext_end = 1u64 << cluster_bits;
                match version {
                    2 => self.extension_at(end),
                    3 => {
                        self.step = Step::V3Fields;
                        Some(Want::new(end, (V3_LEN - end) as usize))
                    }
                    v => {
                        self.out
                            .violate("version", format!("qcow2 version {v} is not 2 or 3"));
                        None
                    }
                }
            }
            Step::V3Fields => {
                // `d` starts at offset 72.
                let features = be64(d, 0);
                if features & INCOMPAT_DATA_FILE != 0 {
                    self.out
                        .violate("data_file", "qcow2 image uses an external data file");
                }
                if features & !INCOMPAT_KNOWN != 0 {
                    self.out.violate(
                        "unknown_features",
                        format!("qcow2 has unknown incompatible features {features:#x}"),
                    );
                }
                let header_length = u64::from(be32(d, 100 - V2_LEN));
                if header_length < V3_LEN {
                    self.out
                        .fail(format!("qcow2 header_length {header_length} is too short"));
                    return None;
                }
                self.extension_at(header_length)
            }
            Step::Extension => {
                let kind = be32(d, 0);
                let len = u64::from(be32(d, 4));
                if kind == 0 {
                    return None;
                }
                if kind == EXT_DATA_FILE {
                    self.out
                        .violate("data_file", "qcow2 header names an external data file");
                }
                let next = end.checked_add(len.checked_add(7)? & !7)?;
                self.extension_at(next)
            }
        }
    }

    fn partial(&mut self, _want: Want, _data: &[u8]) {
        if self.step == Step::V3Fields {
            self.out.fail("qcow2 header is truncated");
        }
    }

    fn outcome(&self) -> &Outcome {
        &self.out
    }

    fn outcome_mut(&mut self) -> &mut Outcome {
        &mut self.out
    }
}

/// The QED parser: QED images are always refused.
pub(crate) struct Qed {
    out: Outcome,
}

impl Qed {
    /// A parser waiting for the header (image_size u64 LE @48).
    pub(crate) fn new() -> Self {
        Qed {
            out: Outcome::default(),
        }
    }
}

impl Stage for Qed {
    fn format(&self) -> Format {
        Format::Qed
    }

    fn start(&self) -> Want {
        Want::new(0, 56)
    }

    fn step(&mut self, d: &[u8], _end: u64) -> Option<Want> {
        if has(d, 0, b"QED\0") {
            self.out.matched = true;
            self.out.virtual_size = Some(le64(d, 48));
            self.out.violate(
                "banned",
                "QED images are not allowed (format is unmaintained)",
            );
        }
        None
    }

    fn outcome(&self) -> &Outcome {
        &self.out
    }

    fn outcome_mut(&mut self) -> &mut Outcome {
        &mut self.out
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use crate::testutil::{checks, inspect};
    use crate::Format;

    /// A qcow2 header of `version` with a 64 KiB cluster and a 1 GiB disk.
    pub(crate) fn header(version: u32) -> Vec<u8> {
        let mut h = vec![0u8; 512];
        h[..4].copy_from_slice(b"QFI\xfb");
        h[4..8].copy_from_slice(&version.to_be_bytes());
        h[20..24].copy_from_slice(&16u32.to_be_bytes());
        h[24..32].copy_from_slice(&(1u64 << 30).to_be_bytes());
        if version == 3 {
            h[100..104].copy_from_slice(&112u32.to_be_bytes());
        }
        h
    }

    #[test]
    fn clean_v2_and_v3() {
        for v in [2, 3] {
            let r = inspect(&header(v));
            assert_eq!(r.format, Format::Qcow2);
            assert_eq!(r.virtual_size, Some(1 << 30));
            assert!(r.violations.is_empty(), "{:?}", r.violations);
            assert_eq!(r.error, None);
        }
    }

    #[test]
    fn bad_version() {
        assert_eq!(checks(&inspect(&header(4))), ["version"]);
        assert_eq!(checks(&inspect(&header(1))), ["version"]);
    }

    #[test]
    fn backing_file_and_encryption() {
        let mut h = header(3);
        h[8..16].copy_from_slice(&0x200u64.to_be_bytes());
        h[32..36].copy_from_slice(&2u32.to_be_bytes());
        assert_eq!(checks(&inspect(&h)), ["backing_file", "encryption"]);
    }

    #[test]
    fn feature_bits() {
        let mut h = header(3);
        h[72..80].copy_from_slice(&0b100u64.to_be_bytes());
        assert_eq!(checks(&inspect(&h)), ["data_file"]);
        h[72..80].copy_from_slice(&0x20u64.to_be_bytes());
        assert_eq!(checks(&inspect(&h)), ["unknown_features"]);
        // Known bits (dirty, corrupt, compression type, extended L2) are fine.
        h[72..80].copy_from_slice(&0b11011u64.to_be_bytes());
        assert!(inspect(&h).violations.is_empty());
        // Version 2 has no feature fields: the same bytes are ignored.
        let mut h2 = header(2);
        h2[72..80].copy_from_slice(&0x24u64.to_be_bytes());
        assert!(inspect(&h2).violations.is_empty());
    }

    #[test]
    fn data_file_extension() {
        for v in [2u32, 3] {
            let mut h = header(v);
            let at = if v == 3 { 112 } else { 72 };
            // A feature-name table extension first (length 13, padded to 16), then DATA.
            h[at..at + 4].copy_from_slice(&0x6803_f857u32.to_be_bytes());
            h[at + 4..at + 8].copy_from_slice(&13u32.to_be_bytes());
            let at = at + 8 + 16;
            h[at..at + 4].copy_from_slice(b"DATA");
            h[at + 4..at + 8].copy_from_slice(&8u32.to_be_bytes());
            h[at + 8..at + 16].copy_from_slice(b"/dev/sda");
            assert_eq!(checks(&inspect(&h)), ["data_file"], "v{v}");
        }
    }

    #[test]
    fn extensions_end_at_type_zero_and_at_the_cluster_end() {
        let mut h = header(3);
        // End marker, then a DATA extension that QEMU never reads.
        h[120..124].copy_from_slice(b"DATA");
        assert!(inspect(&h).violations.is_empty());
        // Cluster of 512 bytes: an extension past it is not read either.
        let mut h = header(3);
        h[20..24].copy_from_slice(&9u32.to_be_bytes());
        h[112..116].copy_from_slice(&0x1234u32.to_be_bytes());
        h[116..120].copy_from_slice(&392u32.to_be_bytes());
        let mut long = h.clone();
        long.resize(1024, 0);
        long[512..516].copy_from_slice(b"DATA");
        assert!(inspect(&long).violations.is_empty());
    }

    #[test]
    fn short_v3_header_is_an_error() {
        let mut h = header(3);
        h[100..104].copy_from_slice(&80u32.to_be_bytes());
        assert!(inspect(&h).error.is_some());
        assert!(inspect(&header(3)[..90]).error.is_some());
        // Too short for a header at all: not qcow2.
        assert_eq!(inspect(&header(3)[..40]).format, Format::Raw);
    }

    #[test]
    fn qed_is_banned() {
        let mut h = vec![0u8; 64];
        h[..4].copy_from_slice(b"QED\0");
        h[48..56].copy_from_slice(&4096u64.to_le_bytes());
        let r = inspect(&h);
        assert_eq!(r.format, Format::Qed);
        assert_eq!(r.virtual_size, Some(4096));
        assert_eq!(checks(&r), ["banned"]);
    }
}
