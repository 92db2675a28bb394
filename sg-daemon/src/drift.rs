//! What the desired state in force (`state.toml`, API changes) has that the
//! config file has not: the objects added, removed or changed, named, for
//! the warning at start and for a reload that would discard them.

use crate::config::schema::Document;

/// The objects of `state` that differ from the config file's `file`, one
/// line each, e.g. `security group sg-new added through the API`.
pub fn differences(state: &Document, file: &Document) -> Vec<String> {
    let mut out = Vec::new();
    compare(
        &mut out,
        "prefix list",
        &state.prefix_list,
        &file.prefix_list,
        |l| &l.id,
    );
    compare(
        &mut out,
        "port list",
        &state.port_list,
        &file.port_list,
        |l| &l.id,
    );
    compare(
        &mut out,
        "security group",
        &state.security_group,
        &file.security_group,
        |g| &g.id,
    );
    compare(
        &mut out,
        "interface",
        &state.interface,
        &file.interface,
        |b| &b.name,
    );
    compare(
        &mut out,
        "snapshot policy",
        &state.snapshot_policy,
        &file.snapshot_policy,
        |p| &p.id,
    );
    out
}

/// One kind of object, matched by id.
fn compare<T: PartialEq>(
    out: &mut Vec<String>,
    kind: &str,
    state: &[T],
    file: &[T],
    id: impl Fn(&T) -> &String,
) {
    let find = |all: &'_ [T], key: &String| all.iter().position(|o| id(o) == key);
    for s in state {
        match find(file, id(s)).map(|i| &file[i]) {
            None => out.push(format!("{kind} {} added through the API", id(s))),
            Some(f) if f != s => out.push(format!("{kind} {} changed through the API", id(s))),
            Some(_) => {}
        }
    }
    for f in file {
        if find(state, id(f)).is_none() {
            out.push(format!(
                "{kind} {} removed through the API (it is in the file)",
                id(f)
            ));
        }
    }
}
