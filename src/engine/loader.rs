//! Loads a rules directory: every `*.chain.toml` parsed, every node built (scripts compiled), every
//! relation resolved; all problems are collected and reported together.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::RulesErrors;
use super::chain::{Chain, Chains, Route, Slot};
use super::debug::DebugRegistry;
use super::nodes::{BuildCtx, Kind, Node};
use super::script::Sandbox;

pub const CHAIN_SUFFIX: &str = ".chain.toml";

/// A chain file as written on disk (and written back by a save over REST).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ChainDoc {
    pub name: String,
    #[serde(default)]
    pub root: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub entry: String,
    #[serde(default)]
    pub nodes: Vec<NodeDoc>,
    #[serde(default)]
    pub relations: Vec<RelationDoc>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct NodeDoc {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// Display name; documentation only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Everything else is the kind's typed config.
    #[serde(flatten)]
    pub config: toml::Table,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RelationDoc {
    pub from: String,
    pub to: String,
    #[serde(rename = "type")]
    pub relation: String,
}

/// Stable ids derived from file names: a chain keeps its id across restarts and reloads.
const ID_NAMESPACE: Uuid = Uuid::from_u128(0x5c1e_0b7a_96d2_4f0e_9a53_2b6e_7d41_c0f8);

pub fn chain_id(file: &str) -> Uuid {
    Uuid::new_v5(&ID_NAMESPACE, format!("chain/{file}").as_bytes())
}

pub fn node_id(file: &str, node: &str) -> Uuid {
    Uuid::new_v5(&ID_NAMESPACE, format!("node/{file}/{node}").as_bytes())
}

/// Where a load reads its files: the rules directory, with some files replaced by candidate texts
/// (a save being validated, a dry run) that are not on disk. Scripts read are remembered.
pub struct Source<'a> {
    pub dir: &'a Path,
    /// Path relative to `dir` -> text.
    pub overlay: &'a BTreeMap<PathBuf, String>,
    scripts: Mutex<BTreeMap<String, String>>,
}

impl<'a> Source<'a> {
    pub fn new(dir: &'a Path, overlay: &'a BTreeMap<PathBuf, String>) -> Self {
        Self {
            dir,
            overlay,
            scripts: Mutex::default(),
        }
    }

    pub fn read(&self, rel: &Path) -> std::io::Result<String> {
        match self.overlay.get(rel) {
            Some(text) => Ok(text.clone()),
            None => std::fs::read_to_string(self.dir.join(rel)),
        }
    }

    /// Reads a script and remembers its text (shown over REST beside the chain).
    pub fn read_script(&self, rel: &str) -> std::io::Result<String> {
        let text = self.read(Path::new(rel))?;
        self.scripts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(rel.to_owned(), text.clone());
        Ok(text)
    }
}

/// Loads and validates the whole directory.
pub fn load_dir(dir: &Path, sandbox: &Arc<Sandbox>) -> Result<Chains, RulesErrors> {
    let overlay = BTreeMap::new();
    load(
        &Source::new(dir, &overlay),
        sandbox,
        &DebugRegistry::new(1, 1),
    )
}

/// Loads and validates every chain of `source`; nodes get their debug slots from `debug`.
pub fn load(
    source: &Source<'_>,
    sandbox: &Arc<Sandbox>,
    debug: &DebugRegistry,
) -> Result<Chains, RulesErrors> {
    let dir = source.dir;
    let mut errors = Vec::new();
    let mut files = chain_files(dir).map_err(|e| RulesErrors(vec![e]))?;
    for rel in source.overlay.keys() {
        let name = rel
            .to_str()
            .filter(|n| n.ends_with(CHAIN_SUFFIX) && !n.contains('/'));
        if let Some(name) = name
            && !files.iter().any(|f| f == name)
        {
            files.push(name.to_owned());
        }
    }
    files.sort();
    if files.is_empty() {
        errors.push(format!("no *{CHAIN_SUFFIX} file in {}", dir.display()));
    }
    let mut chains = Vec::new();
    for file in &files {
        let before = errors.len();
        let chain = source
            .read(Path::new(file))
            .map_err(|e| e.to_string())
            .and_then(|text| {
                let doc = toml::from_str::<ChainDoc>(&text).map_err(|e| e.to_string())?;
                Ok((doc, text))
            })
            .map_err(|e| errors.push(format!("{file}: {}", e.trim_end())))
            .ok()
            .and_then(|(doc, text)| {
                let ctx = ChainCtx {
                    file,
                    source,
                    sandbox,
                    debug,
                };
                build_chain(&ctx, doc, text, &mut errors)
            });
        match chain {
            Some(chain) if errors.len() == before => chains.push((file.as_str(), chain)),
            _ => {}
        }
    }
    let root = check_chains(&chains, files.len(), &mut errors);
    if !errors.is_empty() {
        return Err(RulesErrors(errors));
    }
    let root = root.ok_or_else(|| RulesErrors(vec!["no root chain".to_owned()]))?;
    let scripts = std::mem::take(
        &mut *source
            .scripts
            .lock()
            .unwrap_or_else(PoisonError::into_inner),
    );
    Ok(Chains::new(
        chains.into_iter().map(|(_, c)| c).collect(),
        root,
        scripts,
    ))
}

/// `*.chain.toml` names in the directory, sorted so errors come out in a stable order.
fn chain_files(dir: &Path) -> Result<Vec<String>, String> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read rules directory {}: {e}", dir.display()))?;
    let mut files: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| name.ends_with(CHAIN_SUFFIX))
        .collect();
    files.sort();
    Ok(files)
}

/// Exactly one root, unique names. Only judged when every chain file could be read, so a broken
/// file does not add a misleading "no root chain".
fn check_chains(
    chains: &[(&str, Chain)],
    file_count: usize,
    errors: &mut Vec<String>,
) -> Option<usize> {
    let mut names: HashMap<&str, &str> = HashMap::new();
    for (file, chain) in chains {
        if let Some(other) = names.insert(&chain.name, file) {
            errors.push(format!(
                "{file}: chain name '{}' is also used by {other}",
                chain.name
            ));
        }
    }
    let roots: Vec<usize> = (0..chains.len()).filter(|&i| chains[i].1.root).collect();
    match roots.as_slice() {
        [root] => return Some(*root),
        [] if chains.len() == file_count && file_count > 0 => {
            errors.push("no root chain: set `root = true` in one chain file".to_owned());
        }
        [] => {}
        several => {
            let files: Vec<&str> = several.iter().map(|&i| chains[i].0).collect();
            errors.push(format!("several root chains: {}", files.join(", ")));
        }
    }
    None
}

/// What building one chain file uses.
struct ChainCtx<'a> {
    file: &'a str,
    source: &'a Source<'a>,
    sandbox: &'a Arc<Sandbox>,
    debug: &'a DebugRegistry,
}

fn build_chain(
    ctx: &ChainCtx<'_>,
    raw: ChainDoc,
    text: String,
    errors: &mut Vec<String>,
) -> Option<Chain> {
    let file = ctx.file;
    let doc = raw.clone();
    let before = errors.len();
    let mut index: HashMap<String, (usize, Option<Kind>)> = HashMap::new();
    let mut slots = Vec::with_capacity(raw.nodes.len());
    for (i, node) in raw.nodes.into_iter().enumerate() {
        if node.id.trim().is_empty() {
            errors.push(format!("{file}: node #{} has an empty id", i + 1));
            continue;
        }
        if index.contains_key(&node.id) {
            errors.push(format!("{file}: node id '{}' is used twice", node.id));
            continue;
        }
        let kind = Kind::parse(&node.kind);
        index.insert(node.id.clone(), (i, kind));
        slots.push(build_node(ctx, node, kind, errors));
    }
    let entry = match index.get(&raw.entry) {
        Some((i, _)) => *i,
        None => {
            errors.push(format!("{file}: entry node '{}' is not defined", raw.entry));
            0
        }
    };
    let routes = resolve_relations(file, &raw.relations, &index, errors);
    if errors.len() > before {
        return None;
    }
    let mut slots: Vec<Slot> = slots.into_iter().flatten().collect();
    for (from, route) in routes {
        slots[from].routes.push(route);
    }
    Some(Chain {
        name: raw.name,
        root: raw.root,
        entry,
        slots,
        file: file.to_owned(),
        id: chain_id(file),
        doc,
        text,
    })
}

fn build_node(
    chain: &ChainCtx<'_>,
    node: NodeDoc,
    kind: Option<Kind>,
    errors: &mut Vec<String>,
) -> Option<Slot> {
    let file = chain.file;
    let Some(kind) = kind else {
        errors.push(format!(
            "{file}: node '{}': unknown type '{}' (known: {})",
            node.id,
            node.kind,
            Kind::names()
        ));
        return None;
    };
    let ctx = BuildCtx {
        source: chain.source,
        sandbox: chain.sandbox,
        node_id: &node.id,
    };
    match Node::build(kind, node.config, &ctx) {
        Ok(built) => {
            let uuid = node_id(file, &node.id);
            Some(Slot::new(node.id, built, uuid, chain.debug.slot(uuid)))
        }
        Err(e) => {
            errors.push(format!(
                "{file}: node '{}' ({}): {e}",
                node.id,
                kind.as_str()
            ));
            None
        }
    }
}

/// Relations as (from index, route); unknown ends, impossible relation names and duplicates are errors.
fn resolve_relations(
    file: &str,
    relations: &[RelationDoc],
    index: &HashMap<String, (usize, Option<Kind>)>,
    errors: &mut Vec<String>,
) -> Vec<(usize, Route)> {
    let mut out = Vec::with_capacity(relations.len());
    let mut seen = std::collections::HashSet::new();
    for r in relations {
        let what = format!(
            "{file}: relation '{}' -> '{}' ({})",
            r.from, r.to, r.relation
        );
        let from = index.get(&r.from);
        let to = index.get(&r.to);
        for (end, name) in [(from, &r.from), (to, &r.to)] {
            if end.is_none() {
                errors.push(format!("{what}: unknown node '{name}'"));
            }
        }
        if r.relation.trim().is_empty() {
            errors.push(format!("{what}: empty relation type"));
            continue;
        }
        if let Some(outputs) = from.and_then(|(_, kind)| kind.and_then(Kind::outputs))
            && !outputs.iter().any(|o| o.eq_ignore_ascii_case(&r.relation))
        {
            errors.push(format!(
                "{what}: '{}' never emits '{}' (it emits {})",
                r.from,
                r.relation,
                outputs.join(", ")
            ));
            continue;
        }
        let (Some(&(from, _)), Some(&(to, _))) = (from, to) else {
            continue;
        };
        if !seen.insert((from, to, r.relation.to_lowercase())) {
            errors.push(format!("{what}: duplicate relation"));
            continue;
        }
        out.push((from, Route::new(&r.relation, to)));
    }
    out
}
