//! `loopgate memory export` and `loopgate memory import`: what loopgate learned, as a file
//! the owner can keep, read, move to another loopgate or edit.
//!
//! JSON is the exchange format: `{"format": "loopgate-memory", "version": 1, "exported_at",
//! "memories": [{kind, subject, content, confidence, origin, trust, evidence, created_at,
//! updated_at, …}]}`. Markdown is for reading only. An import goes through distillation
//! like every memory write (a repeat confirms, a newer statement on a subject replaces,
//! a forgotten memory stays forgotten) and keeps each memory's origin and trust.

use std::fmt::Write as _;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use loopgate_engine::memory::Origin;
use loopgate_engine::{Memory, MemoryCandidate, MemoryKind, MemoryQuery, RememberOutcome, SignalId, Store, Trust};
use serde::{Deserialize, Serialize};

const FORMAT: &str = "loopgate-memory";

#[derive(Debug, Serialize)]
struct Export<'a> {
    format: &'static str,
    version: u32,
    exported_at: DateTime<Utc>,
    memories: &'a [Memory],
}

/// One memory as a file gives it: what distillation needs; the rest of an export (ids,
/// dates, stability) is this database's bookkeeping and is made anew.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Imported {
    kind: MemoryKind,
    #[serde(default)]
    subject: String,
    content: String,
    #[serde(default = "certain")]
    confidence: f64,
    #[serde(default = "by_owner")]
    origin: Origin,
    /// A file without it is taken as the owner's own words only when its origin says so.
    trust: Option<Trust>,
    #[serde(default)]
    evidence: Vec<SignalId>,
    /// The exporting database's bookkeeping: read so a typo elsewhere is refused, then
    /// made anew here.
    #[serde(default, rename = "id")]
    _id: Option<serde_json::Value>,
    #[serde(default, rename = "stability")]
    _stability: Option<serde_json::Value>,
    #[serde(default, rename = "created_at")]
    _created_at: Option<serde_json::Value>,
    #[serde(default, rename = "updated_at")]
    _updated_at: Option<serde_json::Value>,
}

fn certain() -> f64 {
    1.0
}

fn by_owner() -> Origin {
    Origin::Owner
}

#[derive(Debug, Deserialize)]
struct File {
    format: String,
    version: u32,
    memories: Vec<Imported>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Json,
    Markdown,
}

/// Every memory, oldest first.
pub async fn all(store: &Store) -> anyhow::Result<Vec<Memory>> {
    let mut memories: Vec<Memory> = store
        .search_memories(&MemoryQuery { text: String::new(), kind: None, limit: u32::MAX })
        .await?
        .into_iter()
        .map(|hit| hit.memory)
        .collect();
    memories.sort_by_key(|m| m.id);
    Ok(memories)
}

pub fn render(memories: &[Memory], format: Format, now: DateTime<Utc>) -> anyhow::Result<String> {
    match format {
        Format::Json => {
            let export = Export { format: FORMAT, version: 1, exported_at: now, memories };
            Ok(serde_json::to_string_pretty(&export)? + "\n")
        }
        Format::Markdown => Ok(markdown(memories, now)),
    }
}

fn markdown(memories: &[Memory], now: DateTime<Utc>) -> String {
    let mut out = format!(
        "# What loopgate remembers\n\nExported {} · {} memor{}\n",
        now.format("%Y-%m-%d %H:%M UTC"),
        memories.len(),
        if memories.len() == 1 { "y" } else { "ies" }
    );
    let mut kinds: Vec<MemoryKind> = memories.iter().map(|m| m.kind).collect();
    kinds.sort_by_key(|k| k.as_str());
    kinds.dedup();
    for kind in kinds {
        let _ = write!(out, "\n## {}\n\n", kind.as_str().replace('_', " "));
        for m in memories.iter().filter(|m| m.kind == kind) {
            let text = m.content.replace('\n', " ");
            match m.subject.is_empty() {
                true => {
                    let _ = writeln!(out, "- {text}");
                }
                false => {
                    let _ = writeln!(out, "- **{}**: {text}", m.subject);
                }
            }
            let untrusted = if m.trust == Trust::Untrusted { " · ⚠ untrusted (someone else's words)" } else { "" };
            let _ = writeln!(
                out,
                "  _#{} · from {} · confidence {:.2} · since {}{untrusted}_",
                m.id,
                m.origin.as_str(),
                m.confidence,
                m.created_at.format("%Y-%m-%d"),
            );
        }
    }
    out
}

/// What an import did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct ImportReport {
    pub added: usize,
    pub confirmed: usize,
    pub replaced: usize,
    /// `(entry number from 1, why)`: refused by distillation (forgotten before, noise).
    pub rejected: Vec<(usize, String)>,
}

/// Reads a JSON export and remembers each memory in it. The whole file is checked before
/// anything is written: one bad entry and nothing changes.
pub async fn import(store: &Store, text: &str) -> anyhow::Result<ImportReport> {
    let file: File = serde_json::from_str(text).context("not a loopgate memory export (JSON)")?;
    if file.format != FORMAT || file.version != 1 {
        bail!("not a loopgate memory export: format {:?} version {}", file.format, file.version);
    }
    let mut candidates = Vec::with_capacity(file.memories.len());
    for (n, m) in file.memories.into_iter().enumerate() {
        let trust = m.trust.unwrap_or(if m.origin == Origin::Owner { Trust::Trusted } else { Trust::Untrusted });
        let candidate = MemoryCandidate {
            kind: m.kind,
            subject: m.subject,
            content: m.content,
            confidence: m.confidence,
            origin: m.origin,
            trust,
            evidence: m.evidence,
        };
        candidate.validate().map_err(|e| anyhow::anyhow!("entry {}: {e}; nothing was imported", n + 1))?;
        candidates.push(candidate);
    }
    let mut report = ImportReport::default();
    for (n, mut candidate) in candidates.into_iter().enumerate() {
        // Evidence ids name signals of the database exported from; only those this one
        // holds (the same database, restored) still mean anything.
        let mut kept = Vec::with_capacity(candidate.evidence.len());
        for id in candidate.evidence {
            if store.get_signal(id).await?.is_some() {
                kept.push(id);
            }
        }
        candidate.evidence = kept;
        if store.was_forgotten(&candidate).await? {
            report.rejected.push((n + 1, "forgotten here before; it stays forgotten".into()));
            continue;
        }
        match store.remember(candidate).await? {
            RememberOutcome::Created { .. } => report.added += 1,
            RememberOutcome::Reinforced { .. } => report.confirmed += 1,
            RememberOutcome::Superseded { .. } => report.replaced += 1,
            RememberOutcome::Rejected { reason } => report.rejected.push((n + 1, reason.to_string())),
        }
    }
    Ok(report)
}
