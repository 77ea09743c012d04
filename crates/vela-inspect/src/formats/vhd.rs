//! Microsoft VHD (QEMU's `vpc`) and VHDX.
//!
//! VHD: a 512-byte big-endian footer with cookie `conectix`; dynamic and differencing disks
//! also carry a copy of it at offset 0, fixed disks only at the end. Fields: creator app
//! (4 bytes @28), current_size u64 @48, geometry (cylinders u16 @56, heads u8 @58, sectors per
//! track u8 @59), disk type u32 @60 (2 fixed, 3 dynamic, 4 differencing).
//!
//! VHDX (little-endian): file identifier `vhdxfile` at 0; region table at 64 KiB·3 with
//! signature `regi`, entry count u32 @8 and 32-byte entries from @16 (GUID, file offset u64,
//! length u32, required u32); the metadata region starts with `metadata`, entry count u16 @10
//! and 32-byte entries from @32 (item GUID, offset u32 relative to the region, length u32,
//! flags).

use crate::stream::{be16, be32, be64, byte, has, le16, le32, le64, Outcome, Stage, Want};
use crate::Format;

/// Disk type of a differencing VHD.
const VHD_DIFFERENCING: u32 = 4;
/// Disk type of a fixed VHD.
pub(crate) const VHD_FIXED: u32 = 2;

/// The virtual size QEMU (10.x `block/vpc.c`) gives a VHD footer.
///
/// QEMU sizes the disk by its CHS geometry when the creator app is Virtual PC (`vpc `) or old
/// QEMU (`qemu`), and by `current_size` for every other creator (Hyper-V `win `, `qem2`,
/// Disk2vhd, XenServer, Azure, …) or when the geometry is the maximum 65535/16/255. Before
/// QEMU 10 the rule was inverted (CHS unless the creator was one of a known list); images made
/// by QEMU, Virtual PC and Hyper-V size the same either way.
pub(crate) fn vhd_size(footer: &[u8]) -> u64 {
    let cylinders = u64::from(be16(footer, 56));
    let heads = u64::from(byte(footer, 58));
    let sectors = u64::from(byte(footer, 59));
    let creator = footer.get(28..32).unwrap_or_default();
    let use_chs = creator == b"vpc " || creator == b"qemu";
    let max_geometry = cylinders == 65535 && heads == 16 && sectors == 255;
    if !use_chs || max_geometry {
        be64(footer, 48) / 512 * 512
    } else {
        cylinders * heads * sectors * 512
    }
}

/// The VHD footer `block` (512 bytes) as a fixed disk's, if it is one.
pub(crate) fn fixed_footer_size(block: &[u8]) -> Option<u64> {
    (block.len() == 512 && has(block, 0, b"conectix") && be32(block, 60) == VHD_FIXED)
        .then(|| vhd_size(block))
}

/// The parser of dynamic and differencing VHDs (footer copy at offset 0).
pub(crate) struct Vhd {
    out: Outcome,
}

impl Vhd {
    /// A parser waiting for the first sector.
    pub(crate) fn new() -> Self {
        Vhd {
            out: Outcome::default(),
        }
    }
}

impl Stage for Vhd {
    fn format(&self) -> Format {
        Format::Vhd
    }

    fn start(&self) -> Want {
        Want::new(0, 512)
    }

    fn step(&mut self, d: &[u8], _end: u64) -> Option<Want> {
        if has(d, 0, b"conectix") {
            self.out.matched = true;
            self.out.virtual_size = Some(vhd_size(d));
            if be32(d, 60) == VHD_DIFFERENCING {
                self.out
                    .violate("differencing", "VHD is a differencing disk (has a parent)");
            }
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

/// GUID of the metadata region (8B7CA206-4790-4B9A-B8FE-575F050F886E), as stored.
const METADATA_REGION: [u8; 16] = guid(
    0x8B7C_A206,
    0x4790,
    0x4B9A,
    *b"\xB8\xFE\x57\x5F\x05\x0F\x88\x6E",
);
/// GUID of the Virtual Disk Size item (2FA54224-CD1B-4876-B211-5DBED83BF4B8).
const VIRTUAL_DISK_SIZE: [u8; 16] = guid(
    0x2FA5_4224,
    0xCD1B,
    0x4876,
    *b"\xB2\x11\x5D\xBE\xD8\x3B\xF4\xB8",
);
/// GUID of the Parent Locator item (A8D35F2D-B30B-454D-ABF7-D3D84834AB0C).
const PARENT_LOCATOR: [u8; 16] = guid(
    0xA8D3_5F2D,
    0xB30B,
    0x454D,
    *b"\xAB\xF7\xD3\xD8\x48\x34\xAB\x0C",
);

/// A GUID in Microsoft's mixed-endian layout (first three fields little-endian).
const fn guid(a: u32, b: u16, c: u16, d: [u8; 8]) -> [u8; 16] {
    let a = a.to_le_bytes();
    let b = b.to_le_bytes();
    let c = c.to_le_bytes();
    [
        a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d[0], d[1], d[2], d[3], d[4], d[5], d[6],
        d[7],
    ]
}

/// Offset of the (first) region table.
const REGION_TABLE: u64 = 0x30000;
/// Entry counts must stay below this.
const MAX_ENTRIES: u64 = 2048;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VhdxStep {
    Ident,
    RegionHeader,
    RegionEntries,
    MetadataHeader,
    MetadataEntries,
    Size,
    Done,
}

/// The VHDX parser.
pub(crate) struct Vhdx {
    out: Outcome,
    step: VhdxStep,
    metadata: u64,
}

impl Vhdx {
    /// A parser waiting for the file identifier.
    pub(crate) fn new() -> Self {
        Vhdx {
            out: Outcome::default(),
            step: VhdxStep::Ident,
            metadata: 0,
        }
    }

    fn fail(&mut self, reason: impl Into<String>) -> Option<Want> {
        self.step = VhdxStep::Done;
        self.out.fail(reason);
        None
    }

    /// The table of `count` 32-byte entries at `off`.
    fn entries(&mut self, off: u64, count: u64, next: VhdxStep) -> Option<Want> {
        if count == 0 || count >= MAX_ENTRIES {
            return self.fail(format!("VHDX table has {count} entries"));
        }
        self.step = next;
        Some(Want::new(off, (count * 32) as usize))
    }
}

impl Stage for Vhdx {
    fn format(&self) -> Format {
        Format::Vhdx
    }

    fn start(&self) -> Want {
        Want::new(0, 8)
    }

    fn step(&mut self, d: &[u8], end: u64) -> Option<Want> {
        match self.step {
            VhdxStep::Ident => {
                if !has(d, 0, b"vhdxfile") {
                    self.step = VhdxStep::Done;
                    return None;
                }
                self.out.matched = true;
                self.step = VhdxStep::RegionHeader;
                Some(Want::new(REGION_TABLE, 16))
            }
            VhdxStep::RegionHeader => {
                if !has(d, 0, b"regi") {
                    return self.fail("VHDX region table signature missing");
                }
                self.entries(end, u64::from(le32(d, 8)), VhdxStep::RegionEntries)
            }
            VhdxStep::RegionEntries => {
                let Some(entry) = d
                    .chunks_exact(32)
                    .find(|e| e.get(..16) == Some(&METADATA_REGION[..]))
                else {
                    return self.fail("VHDX has no metadata region");
                };
                self.metadata = le64(entry, 16);
                self.step = VhdxStep::MetadataHeader;
                Some(Want::new(self.metadata, 32))
            }
            VhdxStep::MetadataHeader => {
                if !has(d, 0, b"metadata") {
                    return self.fail("VHDX metadata table signature missing");
                }
                self.entries(end, u64::from(le16(d, 10)), VhdxStep::MetadataEntries)
            }
            VhdxStep::MetadataEntries => {
                if d.chunks_exact(32)
                    .any(|e| e.get(..16) == Some(&PARENT_LOCATOR[..]))
                {
                    self.out.violate(
                        "differencing",
                        "VHDX has a parent locator (a differencing disk)",
                    );
                }
                let Some(item) = d
                    .chunks_exact(32)
                    .find(|e| e.get(..16) == Some(&VIRTUAL_DISK_SIZE[..]))
                else {
                    return self.fail("VHDX metadata has no virtual disk size");
                };
                let Some(at) = self.metadata.checked_add(u64::from(le32(item, 16))) else {
                    return self.fail("VHDX virtual disk size offset overflows");
                };
                self.step = VhdxStep::Size;
                Some(Want::new(at, 8))
            }
            VhdxStep::Size => {
                self.step = VhdxStep::Done;
                self.out.virtual_size = Some(le64(d, 0));
                None
            }
            VhdxStep::Done => None,
        }
    }

    fn partial(&mut self, _want: Want, _data: &[u8]) {
        if self.step != VhdxStep::Ident && self.step != VhdxStep::Done {
            self.out
                .fail("VHDX stream ends before its virtual disk size");
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
    use super::*;
    use crate::testutil::{checks, inspect};

    /// A VHD footer made by `creator` with geometry 302/4/17 and the given current size.
    pub(crate) fn footer(creator: &[u8; 4], disk_type: u32, current: u64) -> Vec<u8> {
        let mut f = vec![0u8; 512];
        f[..8].copy_from_slice(b"conectix");
        f[28..32].copy_from_slice(creator);
        f[40..48].copy_from_slice(&current.to_be_bytes());
        f[48..56].copy_from_slice(&current.to_be_bytes());
        f[56..58].copy_from_slice(&302u16.to_be_bytes());
        f[58] = 4;
        f[59] = 17;
        f[60..64].copy_from_slice(&disk_type.to_be_bytes());
        f
    }

    #[test]
    fn vhd_size_rule() {
        let chs = 302 * 4 * 17 * 512;
        assert_eq!(vhd_size(&footer(b"qemu", 3, 10 << 20)), chs);
        assert_eq!(vhd_size(&footer(b"vpc ", 3, 10 << 20)), chs);
        for app in [
            b"win ", b"qem2", b"d2v ", b"CTXS", b"tap\0", b"wa\0\0", b"xyz ",
        ] {
            assert_eq!(vhd_size(&footer(app, 3, (10 << 20) + 7)), 10 << 20);
        }
        let mut max = footer(b"qemu", 3, 1 << 40);
        max[56..58].copy_from_slice(&65535u16.to_be_bytes());
        max[58] = 16;
        max[59] = 255;
        assert_eq!(vhd_size(&max), 1 << 40);
    }

    #[test]
    fn dynamic_and_differencing() {
        let mut img = footer(b"qemu", 3, 10 << 20);
        img.resize(2048, 0);
        let r = inspect(&img);
        assert_eq!(r.format, Format::Vhd);
        assert_eq!(r.virtual_size, Some(302 * 4 * 17 * 512));
        assert!(r.violations.is_empty());
        img[60..64].copy_from_slice(&VHD_DIFFERENCING.to_be_bytes());
        assert_eq!(checks(&inspect(&img)), ["differencing"]);
    }

    #[test]
    fn fixed_footer_at_end() {
        let mut img = vec![0u8; 4096];
        img.extend_from_slice(&footer(b"win ", VHD_FIXED, 4096));
        let r = inspect(&img);
        assert_eq!(r.format, Format::Raw);
        assert_eq!(r.vhd_footer_at_end, Some(4096));
        // A dynamic footer at the end alone is not a fixed disk.
        let mut img = vec![0u8; 4096];
        img.extend_from_slice(&footer(b"win ", 3, 4096));
        assert_eq!(inspect(&img).vhd_footer_at_end, None);
        // The last 512 bytes only.
        let mut img = footer(b"win ", VHD_FIXED, 4096);
        img.push(0);
        assert_eq!(inspect(&img).vhd_footer_at_end, None);
    }

    /// A VHDX with the metadata region at `meta` and its items at `meta + 64 KiB`.
    pub(crate) fn vhdx(meta: u64, size: u64, parent: bool) -> Vec<u8> {
        let meta_at = meta as usize;
        let mut v = vec![0u8; meta_at + 0x10000 + 512];
        v[..8].copy_from_slice(b"vhdxfile");
        let rt = 0x30000;
        v[rt..rt + 4].copy_from_slice(b"regi");
        v[rt + 8..rt + 12].copy_from_slice(&2u32.to_le_bytes());
        // A BAT region entry, then the metadata region.
        v[rt + 16..rt + 32].copy_from_slice(&[0x66; 16]);
        v[rt + 48..rt + 64].copy_from_slice(&METADATA_REGION);
        v[rt + 64..rt + 72].copy_from_slice(&meta.to_le_bytes());
        v[rt + 72..rt + 76].copy_from_slice(&0x100000u32.to_le_bytes());
        v[meta_at..meta_at + 8].copy_from_slice(b"metadata");
        let count: u16 = if parent { 2 } else { 1 };
        v[meta_at + 10..meta_at + 12].copy_from_slice(&count.to_le_bytes());
        let e = meta_at + 32;
        v[e..e + 16].copy_from_slice(&VIRTUAL_DISK_SIZE);
        v[e + 16..e + 20].copy_from_slice(&0x10000u32.to_le_bytes());
        v[e + 20..e + 24].copy_from_slice(&8u32.to_le_bytes());
        if parent {
            v[e + 32..e + 48].copy_from_slice(&PARENT_LOCATOR);
        }
        let item = meta_at + 0x10000;
        v[item..item + 8].copy_from_slice(&size.to_le_bytes());
        v
    }

    #[test]
    fn guids_are_mixed_endian() {
        assert_eq!(
            METADATA_REGION,
            *b"\x06\xa2\x7c\x8b\x90\x47\x9a\x4b\xb8\xfe\x57\x5f\x05\x0f\x88\x6e"
        );
    }

    #[test]
    fn vhdx_size_and_parent() {
        let r = inspect(&vhdx(0x40000, 10 << 20, false));
        assert_eq!(r.format, Format::Vhdx);
        assert_eq!(r.virtual_size, Some(10 << 20));
        assert_eq!(r.error, None);
        assert!(r.violations.is_empty());
        let r = inspect(&vhdx(0x40000, 10 << 20, true));
        assert_eq!(checks(&r), ["differencing"]);
    }

    #[test]
    fn vhdx_structures_behind_the_position() {
        // Metadata region before the region table: cannot be read from a stream.
        let mut v = vhdx(0x40000, 1, false);
        let rt = 0x30000 + 64;
        v[rt..rt + 8].copy_from_slice(&0x10000u64.to_le_bytes());
        let r = inspect(&v);
        assert_eq!(r.format, Format::Vhdx);
        assert!(
            r.error.as_deref().is_some_and(|e| e.contains("before")),
            "{r:?}"
        );
        // Truncated stream.
        let r = inspect(&vhdx(0x40000, 1, false)[..0x40010]);
        assert!(r.error.is_some());
        // Bad signature, too many entries.
        let mut v = vhdx(0x40000, 1, false);
        v[0x30000] = b'x';
        assert!(inspect(&v).error.is_some());
        let mut v = vhdx(0x40000, 1, false);
        v[0x30008..0x3000c].copy_from_slice(&5000u32.to_le_bytes());
        assert!(inspect(&v).error.is_some());
    }
}
