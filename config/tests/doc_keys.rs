//! Every configuration key the operator docs name is a real key.
//!
//! An operator who copies a key from `README.md` or `docs/*.md` must get a server that starts.
//! This test reads those files at test time and checks every key they name against
//! `chorus.example.toml`, whose keys (including the commented-out optional ones) are in turn
//! checked against the config model by deserialising each one alone.
//!
//! What counts as naming a key (the extraction rules; `SECTION` is one of `config::SECTIONS`):
//! 1. In an inline code span, a `SECTION.key` token that starts the span or follows a space,
//!    `<`, `(`, `=` or `,` (so `--set calls.ring_timeout=30s`, `<server.data_dir>/chat.db` and
//!    `turn.relay_io = "auto"` count; `src/wiring/chat.rs` does not). A key ending in a file
//!    extension (`chat.db`, `sfu.md`, …) is a file name. A `*` in the key is a wildcard that
//!    must match at least one key (`turn.*_listen`).
//! 2. In an inline code span, `[SECTION] key` (e.g. `` `[chat] retention` ``).
//! 3. Anywhere outside fenced blocks of other languages, an environment variable
//!    `CHORUS_SECTION_KEY` (`CHORUS_CALLS_RING_TIMEOUT`); variables whose second word is not a
//!    section (`CHORUS_TEST_POSTGRES_URL`) are not configuration.
//! 4. In a fenced ```` ```toml ```` block: `[SECTION]` headers and the `key = …` lines (also
//!    commented out, `# key = …`) under them.
//! 5. A table whose header's first cell is `key` or `setting` is a table of keys. Its section
//!    is the last `` `[SECTION]` `` code span between the heading above the table and the
//!    table; a table of keys with no such span fails the test (say which section). Every code
//!    span in a row's first cell is a key of that section, or a `SECTION.key` (rule 1).
//!
//! Arrays of tables (`[[webhooks]]`, one of `config::ARRAY_SECTIONS`) count as sections too, in
//! the example also when commented out (`# [[webhooks]]`, as there is none by default); the
//! example's keys of one are deserialised together, as one entry.
//!
//! Only the top level of `docs/` is read: ADRs record history and may name keys that have since
//! changed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use config::{ARRAY_SECTIONS, SECTIONS};

/// The section a header line opens: `[name]`, or `[[name]]` (also `# [[name]]`) for an array
/// section.
fn header(line: &str) -> Option<String> {
    let uncommented = line.strip_prefix('#').map_or(line, str::trim_start);
    if let Some(name) = uncommented
        .strip_prefix("[[")
        .and_then(|l| l.strip_suffix("]]"))
        .filter(|name| ARRAY_SECTIONS.contains(name))
    {
        return Some(name.to_owned());
    }
    line.strip_prefix('[')
        .and_then(|l| l.strip_suffix(']'))
        .map(str::to_owned)
}

/// Keys of `chorus.example.toml`, per section: every `key = …` and `# key = …` line.
fn example_keys(root: &Path) -> BTreeMap<String, BTreeMap<String, String>> {
    let text = std::fs::read_to_string(root.join("chorus.example.toml")).unwrap();
    let mut keys: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut section = None;
    for line in text.lines() {
        let line = line.trim();
        if let Some(name) = header(line) {
            keys.entry(name.clone()).or_default();
            section = Some(name);
            continue;
        }
        let Some(section) = &section else { continue };
        let assignment = line.strip_prefix('#').map_or(line, str::trim_start);
        if let Some((key, value)) = assignment.split_once(" = ")
            && is_key_word(key)
        {
            keys.get_mut(section)
                .unwrap()
                .insert(key.to_owned(), value.to_owned());
        }
    }
    keys
}

fn is_key_word(word: &str) -> bool {
    !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// The docs an operator reads.
fn operator_docs(root: &Path) -> Vec<PathBuf> {
    let mut docs = vec![root.join("README.md")];
    let mut found: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "md"))
        .collect();
    found.sort();
    docs.extend(found);
    docs
}

/// A key named by a doc, and where.
#[derive(Debug)]
struct Named {
    section: String,
    key: String,
    at: String,
}

const FILE_EXTENSIONS: &[&str] = &[
    "db", "rs", "md", "sh", "toml", "json", "js", "html", "sql", "pem", "log", "txt", "yml",
    "yaml", "css",
];

/// Inline code spans of a line (text between single backticks).
fn code_spans(line: &str) -> Vec<&str> {
    line.split('`').skip(1).step_by(2).collect()
}

/// Rule 1 within one code span.
fn dotted_keys(span: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let bytes = span.as_bytes();
    for section in SECTIONS {
        let needle = format!("{section}.");
        let mut from = 0;
        while let Some(found) = span[from..].find(&needle) {
            let start = from + found;
            from = start + needle.len();
            let boundary =
                start == 0 || matches!(bytes[start - 1], b' ' | b'<' | b'(' | b'=' | b',');
            if !boundary {
                continue;
            }
            let key: String = span[from..]
                .chars()
                .take_while(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '*'
                })
                .collect();
            let after = span[from + key.len()..].chars().next();
            if key.is_empty() || FILE_EXTENSIONS.contains(&key.as_str()) || after == Some('.') {
                continue;
            }
            out.push((section.to_string(), key));
        }
    }
    out
}

/// Rule 2 within one code span.
fn bracketed_key(span: &str) -> Option<(String, String)> {
    let rest = span.strip_prefix('[')?;
    let (section, rest) = rest.split_once(']')?;
    let key: String = rest
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
        .collect();
    (SECTIONS.contains(&section) && !key.is_empty() && rest.starts_with(' '))
        .then(|| (section.to_owned(), key))
}

/// Rule 3 within one line.
fn env_keys(line: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(found) = line[from..].find("CHORUS_") {
        let start = from + found + "CHORUS_".len();
        let name: String = line[start..]
            .chars()
            .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        from = start;
        let Some((section, key)) = name.split_once('_') else {
            continue;
        };
        let section = section.to_ascii_lowercase();
        if SECTIONS.contains(&section.as_str()) && !key.is_empty() {
            out.push((section, key.to_ascii_lowercase()));
        }
    }
    out
}

/// The section a `[section]` code span in `line` names, if any (the last one).
fn section_hint(line: &str) -> Option<String> {
    code_spans(line)
        .into_iter()
        .rev()
        .filter_map(|span| span.strip_prefix('[').and_then(|s| s.strip_suffix(']')))
        .find(|s| SECTIONS.contains(s))
        .map(str::to_owned)
}

fn table_cells(line: &str) -> Vec<&str> {
    line.trim()
        .trim_start_matches('|')
        .trim_end_matches('|')
        .split('|')
        .map(str::trim)
        .collect()
}

/// Every key `text` names, by the rules in the module docs; errors for tables of keys whose
/// section is not said.
fn named_keys(file: &str, text: &str) -> (Vec<Named>, Vec<String>) {
    let mut named = Vec::new();
    let mut errors = Vec::new();
    let mut fence: Option<String> = None;
    let mut toml_section: Option<String> = None;
    let mut hint: Option<String> = None;
    // Some(section) while inside a table of keys; Some(None) if its section is unknown.
    let mut key_table: Option<Option<String>> = None;
    let mut in_table = false;
    for (index, line) in text.lines().enumerate() {
        let at = format!("{file}:{}", index + 1);
        let mut push = |section: String, key: String| {
            named.push(Named {
                section,
                key,
                at: at.clone(),
            })
        };
        let trimmed = line.trim_start();
        if let Some(info) = trimmed.strip_prefix("```") {
            fence = match fence {
                Some(_) => None,
                None => Some(info.trim().to_owned()),
            };
            toml_section = None;
            continue;
        }
        if let Some(language) = &fence {
            if language == "toml" {
                let line = trimmed.trim_end();
                if let Some(name) = header(line) {
                    toml_section = Some(name);
                } else if let Some(section) = &toml_section {
                    let assignment = line.strip_prefix('#').map_or(line, str::trim_start);
                    if let Some((key, _)) = assignment.split_once('=')
                        && is_key_word(key.trim())
                    {
                        push(section.clone(), key.trim().to_owned());
                    }
                }
            }
            for (section, key) in env_keys(line) {
                push(section, key);
            }
            continue;
        }
        if trimmed.starts_with('#') {
            hint = None;
        }
        if let Some(section) = section_hint(line) {
            hint = Some(section);
        }
        for (section, key) in env_keys(line) {
            push(section, key);
        }
        let is_table_line = trimmed.starts_with('|');
        let mut first_cell_spans: Vec<&str> = Vec::new();
        if is_table_line {
            let cells = table_cells(trimmed);
            if !in_table {
                let header = cells.first().map(|c| c.to_ascii_lowercase());
                key_table =
                    matches!(header.as_deref(), Some("key" | "setting")).then(|| hint.clone());
                if key_table == Some(None) {
                    errors.push(format!(
                        "{at}: a table of keys, but no `[section]` code span between the \
                         heading and the table says which section"
                    ));
                }
            } else if let Some(Some(section)) = &key_table
                && !cells.first().is_some_and(|c| c.starts_with("---"))
            {
                first_cell_spans = code_spans(cells.first().copied().unwrap_or(""));
                for span in &first_cell_spans {
                    let word = span.trim();
                    if is_key_word(word) {
                        push(section.clone(), word.to_owned());
                    }
                }
            }
        } else {
            key_table = None;
        }
        in_table = is_table_line;
        for span in code_spans(line) {
            if first_cell_spans.contains(&span) && is_key_word(span.trim()) {
                continue;
            }
            for (section, key) in dotted_keys(span) {
                push(section, key);
            }
            if let Some((section, key)) = bracketed_key(span) {
                push(section, key);
            }
        }
    }
    (named, errors)
}

fn matches_wildcard(pattern: &str, key: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let mut rest = key;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(part) else {
                return false;
            };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            let Some(pos) = rest.find(part) else {
                return false;
            };
            rest = &rest[pos + part.len()..];
        }
    }
    rest.is_empty()
}

fn unknown(keys: &BTreeMap<String, BTreeMap<String, String>>, named: &[Named]) -> Vec<String> {
    let mut errors = BTreeSet::new();
    for n in named {
        let section_keys = keys.get(&n.section);
        let known = section_keys.is_some_and(|s| {
            if n.key.contains('*') {
                s.keys().any(|k| matches_wildcard(&n.key, k))
            } else {
                s.contains_key(&n.key)
            }
        });
        if !known {
            errors.insert(format!(
                "{}: `{}.{}` is not a key of chorus.example.toml",
                n.at, n.section, n.key
            ));
        }
    }
    errors.into_iter().collect()
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn every_key_of_the_example_is_a_key_of_the_model() {
    for (section, keys) in example_keys(&root()) {
        if ARRAY_SECTIONS.contains(&section.as_str()) {
            let mut one = format!("[[{section}]]\n");
            for (key, value) in &keys {
                one.push_str(&format!("{key} = {value}\n"));
            }
            let parsed: Result<config::Config, _> = toml::from_str(&one);
            assert!(
                parsed.is_ok(),
                "chorus.example.toml: the `[[{section}]]` example is not one of the model: {:?}",
                parsed.err()
            );
            continue;
        }
        assert!(SECTIONS.contains(&section.as_str()), "[{section}]");
        for (key, value) in keys {
            let one = format!("[{section}]\n{key} = {value}\n");
            let parsed: Result<config::Config, _> = toml::from_str(&one);
            assert!(
                parsed.is_ok(),
                "chorus.example.toml: `{section}.{key}` is not a key of the config model: {:?}",
                parsed.err()
            );
        }
    }
}

#[test]
fn every_key_the_docs_name_is_a_real_key() {
    let root = root();
    let keys = example_keys(&root);
    let mut errors = Vec::new();
    let mut counted = 0;
    for path in operator_docs(&root) {
        let text = std::fs::read_to_string(&path).unwrap();
        let file = path.strip_prefix(&root).unwrap().display().to_string();
        let (named, table_errors) = named_keys(&file, &text);
        counted += named.len();
        errors.extend(table_errors);
        errors.extend(unknown(&keys, &named));
    }
    assert!(
        counted > 50,
        "the docs name keys; found only {counted}: rules broken?"
    );
    assert!(
        errors.is_empty(),
        "docs name keys the server refuses:\n{}",
        errors.join("\n")
    );
}

#[test]
fn the_rules_find_what_they_should_and_nothing_else() {
    let doc = "\
# Title
Set `chat.retention` or `--set calls.ring_timeout=30s`; the file `<server.data_dir>/chat.db`,
not `src/wiring/chat.rs` nor `sqlite3 chat.db`. Env: CHORUS_AUTH_SECRET, not CHORUS_TEST_X_URL.
Also `[chat] max_connections` and `turn.*_listen`.

## Keys under `[chat]`

| key | default |
|---|---|
| `database_url`, `retention` | x |
| `sqlite_synchronous` (old) | `full` |

## Elsewhere

| setting | default |
|---|---|
| `udp_listen` | y |

```toml
[sfu]
enabled = true
# public_ips = []
```
";
    let (named, errors) = named_keys("doc.md", doc);
    let found: Vec<String> = named
        .iter()
        .map(|n| format!("{}.{}", n.section, n.key))
        .collect();
    assert_eq!(
        found,
        [
            "chat.retention",
            "calls.ring_timeout",
            "server.data_dir",
            "auth.secret",
            "chat.max_connections",
            "turn.*_listen",
            "chat.database_url",
            "chat.retention",
            "chat.sqlite_synchronous",
            "sfu.enabled",
            "sfu.public_ips",
        ]
    );
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].starts_with("doc.md:15:"), "{errors:?}");
    let keys = example_keys(&root());
    let wrong = unknown(&keys, &named);
    assert_eq!(
        wrong,
        ["doc.md:11: `chat.sqlite_synchronous` is not a key of chorus.example.toml"]
    );
}
