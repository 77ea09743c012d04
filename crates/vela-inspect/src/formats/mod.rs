//! The format parsers, one [`Stage`](crate::stream::Stage) each.

pub(crate) mod disk;
pub(crate) mod other;
pub(crate) mod qcow2;
pub(crate) mod vhd;
pub(crate) mod vmdk;

pub(crate) use vhd::fixed_footer_size;
pub(crate) use vmdk::create_type_violation;

use crate::stream::{Driver, Parser};

/// Every parser, in the order that decides which format is reported first when several match.
pub(crate) fn parsers() -> Vec<Box<dyn Parser>> {
    vec![
        Box::new(Driver::new(qcow2::Qcow2::new())),
        Box::new(Driver::new(qcow2::Qed::new())),
        Box::new(Driver::new(vmdk::Vmdk::new())),
        Box::new(Driver::new(vmdk::VmdkText::new())),
        Box::new(Driver::new(vhd::Vhd::new())),
        Box::new(Driver::new(vhd::Vhdx::new())),
        Box::new(Driver::new(other::Header::vdi())),
        Box::new(Driver::new(other::Header::luks())),
        Box::new(Driver::new(other::Header::ploop())),
        Box::new(Driver::new(disk::Iso::new())),
        Box::new(Driver::new(disk::Mbr::new())),
    ]
}
