//! Formats recognised by one header: VirtualBox VDI, LUKS and Parallels (ploop).

use crate::stream::{be16, be32, has, le32, le64, Outcome, Stage, Want};
use crate::Format;

/// A parser that reads one header at offset 0.
pub(crate) struct Header {
    out: Outcome,
    format: Format,
    len: usize,
    check: fn(&mut Outcome, &[u8]),
    /// LUKS: the payload offset in bytes (virtual size = stream size − payload).
    payload: Option<u64>,
}

impl Header {
    fn new(format: Format, len: usize, check: fn(&mut Outcome, &[u8])) -> Self {
        Header {
            out: Outcome::default(),
            format,
            len,
            check,
            payload: None,
        }
    }

    /// VirtualBox VDI: signature u32 LE 0xbeda107f @0x40, image type u32 @0x4c (3 undo,
    /// 4 differencing), disk size u64 @0x170.
    pub(crate) fn vdi() -> Self {
        Header::new(Format::Vdi, 0x178, |out, d| {
            if le32(d, 0x40) != 0xbeda_107f {
                return;
            }
            out.matched = true;
            out.virtual_size = Some(le64(d, 0x170));
            let kind = le32(d, 0x4c);
            if kind == 3 || kind == 4 {
                out.violate(
                    "differencing",
                    format!("VDI image type {kind} has a parent image"),
                );
            }
        })
    }

    /// LUKS: magic `LUKS\xba\xbe`, version u16 BE @6 (only 1 is accepted), payload offset
    /// u32 BE @104 in sectors.
    pub(crate) fn luks() -> Self {
        Header::new(Format::Luks, 108, |out, d| {
            if !has(d, 0, b"LUKS\xba\xbe") {
                return;
            }
            out.matched = true;
            let version = be16(d, 6);
            if version != 1 {
                out.violate("version", format!("LUKS version {version} is not 1"));
            }
        })
    }

    /// Parallels: `WithoutFreeSpace` or `WithouFreSpacExt`, nb_sectors u64 LE @36.
    pub(crate) fn ploop() -> Self {
        Header::new(Format::Ploop, 44, |out, d| {
            if has(d, 0, b"WithoutFreeSpace") || has(d, 0, b"WithouFreSpacExt") {
                out.matched = true;
                out.virtual_size = le64(d, 36).checked_mul(512);
            }
        })
    }
}

impl Stage for Header {
    fn format(&self) -> Format {
        self.format
    }

    fn start(&self) -> Want {
        Want::new(0, self.len)
    }

    fn step(&mut self, d: &[u8], _end: u64) -> Option<Want> {
        (self.check)(&mut self.out, d);
        if self.format == Format::Luks && self.out.matched && be16(d, 6) == 1 {
            self.payload = u64::from(be32(d, 104)).checked_mul(512);
        }
        None
    }

    fn finish(&mut self, size: u64, _tail: &[u8]) {
        if let Some(payload) = self.payload {
            self.out.virtual_size = Some(size.saturating_sub(payload));
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

    #[test]
    fn vdi() {
        let mut v = vec![0u8; 512];
        v[0x40..0x44].copy_from_slice(&0xbeda_107fu32.to_le_bytes());
        v[0x4c..0x50].copy_from_slice(&1u32.to_le_bytes());
        v[0x170..0x178].copy_from_slice(&(10u64 << 20).to_le_bytes());
        let r = inspect(&v);
        assert_eq!(r.format, Format::Vdi);
        assert_eq!(r.virtual_size, Some(10 << 20));
        assert!(r.violations.is_empty());
        for kind in [3u32, 4] {
            v[0x4c..0x50].copy_from_slice(&kind.to_le_bytes());
            assert_eq!(checks(&inspect(&v)), ["differencing"]);
        }
    }

    #[test]
    fn luks() {
        let mut v = vec![0u8; 8192];
        v[..6].copy_from_slice(b"LUKS\xba\xbe");
        v[6..8].copy_from_slice(&1u16.to_be_bytes());
        v[104..108].copy_from_slice(&4u32.to_be_bytes());
        let r = inspect(&v);
        assert_eq!(r.format, Format::Luks);
        assert_eq!(r.virtual_size, Some(8192 - 2048));
        assert!(r.violations.is_empty());
        v[6..8].copy_from_slice(&2u16.to_be_bytes());
        let r = inspect(&v);
        assert_eq!(checks(&r), ["version"]);
        assert_eq!(r.virtual_size, None);
        // A payload beyond the end gives 0 rather than wrapping.
        v[6..8].copy_from_slice(&1u16.to_be_bytes());
        v[104..108].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(inspect(&v).virtual_size, Some(0));
    }

    #[test]
    fn ploop() {
        for magic in [b"WithoutFreeSpace", b"WithouFreSpacExt"] {
            let mut v = vec![0u8; 64];
            v[..16].copy_from_slice(magic);
            v[36..44].copy_from_slice(&20480u64.to_le_bytes());
            let r = inspect(&v);
            assert_eq!(r.format, Format::Ploop);
            assert_eq!(r.virtual_size, Some(10 << 20));
        }
    }
}
