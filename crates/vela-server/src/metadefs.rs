//! Metadata definition files: Vela's default catalog (loaded on first start), and loading
//! and exporting files in Glance's format (`vela metadefs load|export`).

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::Value;
use vela_db::metadefs::LoadOutcome;
use vela_db::Db;
use vela_domain::metadef::NamespaceDoc;

use crate::config::Config;

/// Vela's default definitions (`crates/vela-server/metadefs/`), by file name.
const DEFAULTS: &[(&str, &str)] = &[
    (
        "compute-cpu-pinning.json",
        include_str!("../metadefs/compute-cpu-pinning.json"),
    ),
    (
        "compute-guest-memory-backing.json",
        include_str!("../metadefs/compute-guest-memory-backing.json"),
    ),
    (
        "compute-guest-shutdown.json",
        include_str!("../metadefs/compute-guest-shutdown.json"),
    ),
    (
        "compute-hypervisor.json",
        include_str!("../metadefs/compute-hypervisor.json"),
    ),
    (
        "compute-instance-data.json",
        include_str!("../metadefs/compute-instance-data.json"),
    ),
    (
        "compute-libvirt-image.json",
        include_str!("../metadefs/compute-libvirt-image.json"),
    ),
    (
        "compute-libvirt.json",
        include_str!("../metadefs/compute-libvirt.json"),
    ),
    (
        "compute-randomgen.json",
        include_str!("../metadefs/compute-randomgen.json"),
    ),
    (
        "compute-vcputopology.json",
        include_str!("../metadefs/compute-vcputopology.json"),
    ),
    (
        "compute-watchdog.json",
        include_str!("../metadefs/compute-watchdog.json"),
    ),
    (
        "glance-common-image-props.json",
        include_str!("../metadefs/glance-common-image-props.json"),
    ),
    (
        "image-signature-verification.json",
        include_str!("../metadefs/image-signature-verification.json"),
    ),
    (
        "operating-system.json",
        include_str!("../metadefs/operating-system.json"),
    ),
    (
        "software-runtimes.json",
        include_str!("../metadefs/software-runtimes.json"),
    ),
];

/// The largest definition file read, bytes.
const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;
/// The most files read from one directory.
const MAX_FILES: usize = 1000;

/// The one-time event of loading the first catalog.
const FIRST_LOAD: &str = "metadefs_first_load";

/// What loading did, per namespace.
#[derive(Debug, Default)]
pub struct LoadReport {
    pub created: Vec<String>,
    pub replaced: Vec<String>,
    pub skipped: Vec<String>,
}

fn parse(source: &str, text: &str) -> anyhow::Result<NamespaceDoc> {
    let v: Value =
        serde_json::from_str(text).with_context(|| format!("{source}: not valid JSON"))?;
    let mut doc = NamespaceDoc::parse_file(&v).map_err(|e| anyhow::anyhow!("{source}: {e}"))?;
    // Glance's loader gives files without an owner to `admin`.
    doc.fields.owner.get_or_insert_with(|| "admin".to_owned());
    Ok(doc)
}

/// Vela's default definitions, parsed.
pub fn defaults() -> anyhow::Result<Vec<NamespaceDoc>> {
    DEFAULTS
        .iter()
        .map(|(name, text)| parse(name, text))
        .collect()
}

/// The definition files of `path`: the file itself, or every `*.json` regular file directly in
/// the directory, by name. A file that does not parse stops the load, naming it.
pub fn read_path(path: &Path) -> anyhow::Result<Vec<NamespaceDoc>> {
    let files: Vec<PathBuf> = if path.is_file() {
        vec![path.to_owned()]
    } else {
        let mut files = Vec::new();
        for entry in
            std::fs::read_dir(path).with_context(|| format!("reading {}", path.display()))?
        {
            let entry = entry?;
            let p = entry.path();
            if entry.file_type()?.is_file() && p.extension().is_some_and(|e| e == "json") {
                files.push(p);
            }
        }
        files.sort();
        files
    };
    if files.is_empty() {
        anyhow::bail!("no definition files (*.json) in {}", path.display());
    }
    if files.len() > MAX_FILES {
        anyhow::bail!(
            "more than {MAX_FILES} definition files in {}",
            path.display()
        );
    }
    files
        .iter()
        .map(|f| {
            let len = std::fs::metadata(f)?.len();
            if len > MAX_FILE_BYTES {
                anyhow::bail!("{}: larger than {MAX_FILE_BYTES} bytes", f.display());
            }
            let text =
                std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
            parse(&f.display().to_string(), &text)
        })
        .collect()
}

/// Loads `docs`; a namespace that exists already is replaced (`overwrite`) or left alone.
pub async fn load(db: &Db, docs: &[NamespaceDoc], overwrite: bool) -> anyhow::Result<LoadReport> {
    let mut report = LoadReport::default();
    for doc in docs {
        let name = doc.fields.namespace.clone();
        let outcome = db
            .load_namespace(doc, overwrite, vela_domain::now_micros())
            .await
            .with_context(|| format!("loading namespace {name}"))?;
        match outcome {
            LoadOutcome::Created => report.created.push(name),
            LoadOutcome::Replaced => report.replaced.push(name),
            LoadOutcome::Skipped => report.skipped.push(name),
        }
    }
    Ok(report)
}

/// At start: the standard resource types exist, and the first start of a deployment loads a
/// catalog (the files of `metadefs.first_load_dir`, else Vela's defaults) unless
/// `metadefs.load_on_first_start` is off. Runs once per deployment, whichever node starts first.
pub async fn prepare(db: &Db, cfg: &Config) -> anyhow::Result<()> {
    db.ensure_standard_resource_types().await?;
    if !cfg.metadefs.load_on_first_start {
        return Ok(());
    }
    let docs = match &cfg.metadefs.first_load_dir {
        Some(dir) => read_path(dir)?,
        None => defaults()?,
    };
    let loaded = db
        .once(FIRST_LOAD, || async {
            for doc in &docs {
                db.load_namespace(doc, false, vela_domain::now_micros())
                    .await?;
            }
            Ok(())
        })
        .await?;
    if loaded {
        tracing::info!(
            namespaces = docs.len(),
            "loaded the first metadata definitions catalog"
        );
    }
    Ok(())
}

/// A file name for a namespace: its name, with characters other than letters, digits and
/// `:._-` replaced by `_`.
fn file_name(namespace: &str) -> String {
    let safe: String = namespace
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || ":._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{safe}.json")
}

/// Writes every namespace to `dir` in Glance's file format, one file each; returns how many.
pub async fn export(db: &Db, dir: &Path) -> anyhow::Result<usize> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let docs = db.export_namespaces().await?;
    for doc in &docs {
        let path = dir.join(file_name(&doc.fields.namespace));
        let text = serde_json::to_string_pretty(&doc.to_file_json())?;
        std::fs::write(&path, text + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(docs.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse_and_cover_images() {
        let docs = defaults().unwrap();
        assert!(docs.len() >= 10);
        let for_images = docs
            .iter()
            .filter(|d| {
                d.associations
                    .iter()
                    .any(|a| a.resource_type == "OS::Glance::Image")
            })
            .count();
        assert!(for_images >= 5, "{for_images}");
    }

    #[test]
    fn file_names_are_plain() {
        assert_eq!(
            file_name("OS::Compute::Libvirt"),
            "OS::Compute::Libvirt.json"
        );
        assert_eq!(file_name("a b/../c"), "a_b_.._c.json");
    }
}
