//! Loads a rules directory: every `*.chain.toml` parsed, every node built (scripts compiled), every
//! relation resolved; all problems are collected and reported together.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;

use super::RulesErrors;
use super::chain::{Chain, Chains, Route, Slot};
use super::nodes::{BuildCtx, Kind, Node};
use super::script::Sandbox;

pub const CHAIN_SUFFIX: &str = ".chain.toml";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChainFile {
    name: String,
    #[serde(default)]
    root: bool,
    #[serde(default)]
    #[allow(dead_code)]
    description: Option<String>,
    entry: String,
    #[serde(default)]
    nodes: Vec<RawNode>,
    #[serde(default)]
    relations: Vec<RawRelation>,
}

#[derive(Deserialize)]
struct RawNode {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    /// Display name; documentation only.
    #[serde(default)]
    #[allow(dead_code)]
    name: Option<String>,
    /// Everything else is the kind's typed config.
    #[serde(flatten)]
    config: toml::Table,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRelation {
    from: String,
    to: String,
    #[serde(rename = "type")]
    relation: String,
}

/// Loads and validates the whole directory.
pub fn load_dir(dir: &Path, sandbox: &Arc<Sandbox>) -> Result<Chains, RulesErrors> {
    let mut errors = Vec::new();
    let files = chain_files(dir).map_err(|e| RulesErrors(vec![e]))?;
    if files.is_empty() {
        errors.push(format!("no *{CHAIN_SUFFIX} file in {}", dir.display()));
    }
    let mut chains = Vec::new();
    for file in &files {
        let before = errors.len();
        let chain = std::fs::read_to_string(dir.join(file))
            .map_err(|e| e.to_string())
            .and_then(|text| toml::from_str::<ChainFile>(&text).map_err(|e| e.to_string()))
            .map_err(|e| errors.push(format!("{file}: {}", e.trim_end())))
            .ok()
            .and_then(|raw| build_chain(file, raw, dir, sandbox, &mut errors));
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
    Ok(Chains::new(
        chains.into_iter().map(|(_, c)| c).collect(),
        root,
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

fn build_chain(
    file: &str,
    raw: ChainFile,
    dir: &Path,
    sandbox: &Arc<Sandbox>,
    errors: &mut Vec<String>,
) -> Option<Chain> {
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
        slots.push(build_node(file, node, kind, dir, sandbox, errors));
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
    })
}

fn build_node(
    file: &str,
    node: RawNode,
    kind: Option<Kind>,
    dir: &Path,
    sandbox: &Arc<Sandbox>,
    errors: &mut Vec<String>,
) -> Option<Slot> {
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
        dir,
        sandbox,
        node_id: &node.id,
    };
    match Node::build(kind, node.config, &ctx) {
        Ok(built) => Some(Slot::new(node.id, built)),
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
    relations: &[RawRelation],
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
