//! Formats found in raw disks: ISO 9660 / UDF file systems and MBR / GPT partition tables.

use crate::stream::{byte, has, le16, le32, Outcome, Stage, Want};
use crate::Format;

/// Offset of the first volume descriptor (system area of 16 sectors of 2048 bytes).
const VOLUME_DESCRIPTORS: u64 = 0x8000;
/// Volume descriptor size.
const DESCRIPTOR: usize = 2048;
/// Volume descriptors read.
const DESCRIPTORS: usize = 8;

/// The ISO 9660 / UDF parser.
pub(crate) struct Iso {
    out: Outcome,
}

impl Iso {
    /// A parser waiting for the volume descriptors at 32 KiB.
    pub(crate) fn new() -> Self {
        Iso {
            out: Outcome::default(),
        }
    }

    /// Matches `d` (the volume descriptors, possibly cut short).
    fn detect(&mut self, d: &[u8]) {
        let ident = |i: usize| d.get(i * DESCRIPTOR + 1..i * DESCRIPTOR + 6);
        let iso9660 = ident(0) == Some(b"CD001");
        let udf = ident(0) == Some(b"BEA01")
            && (1..DESCRIPTORS).any(|i| matches!(ident(i), Some(b"NSR02" | b"NSR03")));
        if !(iso9660 || udf) {
            return;
        }
        self.out.matched = true;
        // The Primary Volume Descriptor: volume space size (blocks) × logical block size.
        self.out.virtual_size = (0..DESCRIPTORS)
            .map(|i| i * DESCRIPTOR)
            .find(|&at| byte(d, at) == 1 && has(d, at + 1, b"CD001"))
            .map(|at| u64::from(le32(d, at + 80)) * u64::from(le16(d, at + 128)));
    }
}

impl Stage for Iso {
    fn format(&self) -> Format {
        Format::Iso
    }

    fn start(&self) -> Want {
        Want::new(VOLUME_DESCRIPTORS, DESCRIPTOR * DESCRIPTORS)
    }

    fn step(&mut self, d: &[u8], _end: u64) -> Option<Want> {
        self.detect(d);
        None
    }

    fn partial(&mut self, _want: Want, data: &[u8]) {
        self.detect(data);
    }

    fn finish(&mut self, size: u64, _tail: &[u8]) {
        if self.out.matched && self.out.virtual_size.is_none() {
            self.out.virtual_size = Some(size);
        }
    }

    fn outcome(&self) -> &Outcome {
        &self.out
    }

    fn outcome_mut(&mut self) -> &mut Outcome {
        &mut self.out
    }
}

/// The MBR / GPT parser (a protective MBR is an MBR with one 0xEE partition).
pub(crate) struct Mbr {
    out: Outcome,
}

impl Mbr {
    /// A parser waiting for the first sector.
    pub(crate) fn new() -> Self {
        Mbr {
            out: Outcome::default(),
        }
    }

    /// Whether the boot sector is a FAT or NTFS file system's rather than an MBR.
    fn is_filesystem(d: &[u8]) -> bool {
        has(d, 3, b"NTFS    ")
            || has(d, 3, b"EXFAT   ")
            || has(d, 0x36, b"FAT")
            || has(d, 0x52, b"FAT32")
    }

    /// Checks the four partition entries.
    fn check(&mut self, d: &[u8]) {
        let mut used = 0;
        let mut protective = 0;
        for i in 0..4 {
            let e = d.get(446 + i * 16..446 + (i + 1) * 16).unwrap_or_default();
            let boot = byte(e, 0);
            if boot != 0 && boot != 0x80 {
                self.out.violate(
                    "mbr",
                    format!("MBR partition {i} has an invalid boot flag {boot:#04x}"),
                );
            }
            let kind = byte(e, 4);
            if kind == 0 {
                continue;
            }
            used += 1;
            if kind == 0xEE {
                protective += 1;
                if e.get(1..4) != Some(&[0, 2, 0]) || le32(e, 8) != 1 {
                    self.out.violate(
                        "mbr",
                        "GPT protective partition does not start at CHS 0/2/0, LBA 1",
                    );
                }
            }
        }
        if used == 0 {
            self.out.violate("mbr", "MBR has no partitions");
        } else if protective > 0 && used > 1 {
            self.out.violate(
                "mbr",
                "GPT protective partition is not the only MBR partition",
            );
        }
    }
}

impl Stage for Mbr {
    fn format(&self) -> Format {
        Format::Gpt
    }

    fn start(&self) -> Want {
        Want::new(0, 512)
    }

    fn step(&mut self, d: &[u8], _end: u64) -> Option<Want> {
        if has(d, 510, b"\x55\xAA") && !Self::is_filesystem(d) {
            self.out.matched = true;
            self.check(d);
        }
        None
    }

    fn finish(&mut self, size: u64, _tail: &[u8]) {
        if self.out.matched {
            self.out.virtual_size = Some(size);
        }
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

    pub(crate) fn iso(blocks: u32) -> Vec<u8> {
        let mut v = vec![0u8; 0x8000 + 3 * 2048];
        v[0x8000] = 1;
        v[0x8001..0x8006].copy_from_slice(b"CD001");
        v[0x8000 + 80..0x8000 + 84].copy_from_slice(&blocks.to_le_bytes());
        v[0x8000 + 128..0x8000 + 130].copy_from_slice(&2048u16.to_le_bytes());
        v[0x8800] = 255;
        v[0x8801..0x8806].copy_from_slice(b"CD001");
        v
    }

    /// An MBR with the given (boot flag, type, CHS start, LBA start) entries.
    pub(crate) fn mbr(entries: &[(u8, u8, [u8; 3], u32)]) -> Vec<u8> {
        let mut v = vec![0u8; 4096];
        for (i, (boot, kind, chs, lba)) in entries.iter().enumerate() {
            let e = 446 + i * 16;
            v[e] = *boot;
            v[e + 1..e + 4].copy_from_slice(chs);
            v[e + 4] = *kind;
            v[e + 8..e + 12].copy_from_slice(&lba.to_le_bytes());
        }
        v[510] = 0x55;
        v[511] = 0xAA;
        v
    }

    #[test]
    fn iso9660() {
        let r = inspect(&iso(100));
        assert_eq!(r.format, Format::Iso);
        assert_eq!(r.virtual_size, Some(100 * 2048));
        assert!(r.violations.is_empty());
    }

    #[test]
    fn udf_without_primary_descriptor_uses_the_byte_count() {
        let mut v = vec![0u8; 0x8000 + 4 * 2048];
        v[0x8001..0x8006].copy_from_slice(b"BEA01");
        v[0x9001..0x9006].copy_from_slice(b"NSR03");
        let r = inspect(&v);
        assert_eq!(r.format, Format::Iso);
        assert_eq!(r.virtual_size, Some(v.len() as u64));
        v[0x9001..0x9006].copy_from_slice(b"XXX03");
        assert_eq!(inspect(&v).format, Format::Raw);
    }

    #[test]
    fn hybrid_iso_with_mbr_counts_as_iso() {
        let mut v = iso(10);
        v[..512].copy_from_slice(&mbr(&[(0x80, 0x17, [0, 1, 0], 0)])[..512]);
        let r = inspect(&v);
        assert_eq!(r.format, Format::Iso);
        assert!(r.multiple.is_empty());
    }

    #[test]
    fn mbr_and_gpt() {
        let r = inspect(&mbr(&[(0x80, 0x83, [1, 1, 0], 2048)]));
        assert_eq!(r.format, Format::Gpt);
        assert_eq!(r.virtual_size, Some(4096));
        assert!(r.violations.is_empty());
        let gpt = mbr(&[(0, 0xEE, [0, 2, 0], 1)]);
        assert!(inspect(&gpt).violations.is_empty());
        assert_eq!(checks(&inspect(&mbr(&[(0, 0xEE, [0, 1, 0], 1)]))), ["mbr"]);
        assert_eq!(checks(&inspect(&mbr(&[(0, 0xEE, [0, 2, 0], 2)]))), ["mbr"]);
        let two = mbr(&[(0, 0xEE, [0, 2, 0], 1), (0, 0x83, [0, 3, 0], 100)]);
        assert_eq!(checks(&inspect(&two)), ["mbr"]);
        assert_eq!(
            checks(&inspect(&mbr(&[(0x12, 0x83, [0, 2, 0], 1)]))),
            ["mbr"]
        );
        assert_eq!(checks(&inspect(&mbr(&[]))), ["mbr"]);
    }

    #[test]
    fn fat_and_ntfs_boot_sectors_are_raw() {
        let mut fat = mbr(&[]);
        fat[0x36..0x3b].copy_from_slice(b"FAT16");
        assert_eq!(inspect(&fat).format, Format::Raw);
        let mut fat32 = mbr(&[]);
        fat32[0x52..0x57].copy_from_slice(b"FAT32");
        assert_eq!(inspect(&fat32).format, Format::Raw);
        let mut ntfs = mbr(&[]);
        ntfs[3..11].copy_from_slice(b"NTFS    ");
        assert_eq!(inspect(&ntfs).format, Format::Raw);
    }
}
