//! The committed fuzz seeds for the `inspect` target (fuzz/corpus/inspect) are what their
//! names say, so the fuzzer starts from every format and verdict.

use std::path::Path;

use vela_inspect::{inspect_file, judge, Format, Rules};

#[test]
fn inspect_seeds_are_detected_as_named() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/inspect");
    // (seed, format, declared disk_format, accepted)
    let expect = [
        ("gpt", Format::Gpt, "raw", true),
        ("iso9660", Format::Iso, "iso", true),
        ("luks", Format::Luks, "raw", true),
        ("mbr", Format::Gpt, "raw", true),
        ("ploop", Format::Ploop, "ploop", true),
        ("qcow2-backing", Format::Qcow2, "qcow2", false),
        ("qcow2-datafile", Format::Qcow2, "qcow2", false),
        ("qcow2-encrypted", Format::Qcow2, "qcow2", false),
        ("qcow2-v2", Format::Qcow2, "qcow2", true),
        ("qcow2-v3", Format::Qcow2, "qcow2", true),
        ("qed", Format::Qed, "qcow2", false),
        ("raw-small", Format::Raw, "raw", true),
        ("text-descriptor-passwd", Format::Vmdk, "vmdk", false),
        ("vdi", Format::Vdi, "vdi", true),
        ("vhd-dynamic", Format::Vhd, "vhd", true),
        ("vhd-fixed", Format::Raw, "vhd", true),
        ("vhdx", Format::Vhdx, "vhdx", true),
        ("vmdk-flat-descriptor", Format::Vmdk, "vmdk", false),
        ("vmdk-gd-at-end", Format::Vmdk, "vmdk", true),
        ("vmdk-sparse", Format::Vmdk, "vmdk", true),
        ("vmdk-stream", Format::Vmdk, "vmdk", true),
    ];
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("fuzz/corpus/inspect") {
        let name = entry
            .expect("entry")
            .file_name()
            .into_string()
            .expect("utf-8");
        let &(_, format, declared, ok) = expect
            .iter()
            .find(|e| e.0 == name)
            .unwrap_or_else(|| panic!("seed {name} is not listed here"));
        let r = inspect_file(&dir.join(&name)).expect("read");
        assert_eq!(r.format, format, "{name}: {r:?}");
        let verdict = judge(Some(declared), Some("bare"), &r, &Rules::default());
        assert_eq!(verdict.is_ok(), ok, "{name}: {verdict:?}");
        seen += 1;
    }
    assert_eq!(seen, expect.len());
}
