//! The documentation's links resolve, and the README stays a front page.
//!
//! Every relative link and image (`[text](target)`, `![alt](target)`,
//! reference definitions `[label]: target` and `<a href="target">`) in
//! `README.md`, `docs/*.md` and `bench/reference/README.md`, outside fenced
//! code blocks and code spans, must name a file or folder that exists,
//! resolved from the folder of the page that holds it; a `#anchor` must be
//! the GitHub anchor of a heading of the target page (of the same page for
//! `#anchor` alone). Links with a scheme (`https:`, `mailto:`, ...) are not
//! followed. Only std: no Markdown parser, just the subset the pages use.

use std::collections::HashSet;
use std::fs;
use std::path::{Component, Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The pages whose links are checked, relative to the repository root.
fn pages() -> Vec<PathBuf> {
    let mut pages = vec![PathBuf::from("README.md")];
    let mut docs: Vec<PathBuf> = fs::read_dir(root().join("docs"))
        .expect("docs/ is readable")
        .map(|e| e.expect("a docs/ entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .map(|p| PathBuf::from("docs").join(p.file_name().unwrap()))
        .collect();
    docs.sort();
    pages.extend(docs);
    pages.push(PathBuf::from("bench/reference/README.md"));
    pages
}

/// The lines of `text` outside fenced code blocks (``` or ~~~, at most
/// three spaces of indentation; a fence closes with at least as many of
/// its character), each with its 1-based line number. Fenced lines become
/// empty, so that blocks stay apart.
fn prose_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut fence: Option<(char, usize)> = None;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start_matches(' ');
        let indent = line.len() - trimmed.len();
        let run = |c: char| trimmed.chars().take_while(|&x| x == c).count();
        let opening = if indent <= 3 {
            ['`', '~']
                .into_iter()
                .map(|c| (c, run(c)))
                .find(|&(_, n)| n >= 3)
        } else {
            None
        };
        match (fence, opening) {
            (None, Some(f)) => {
                fence = Some(f);
                out.push((i + 1, String::new()));
            }
            (Some((c, n)), Some((c2, n2))) if c == c2 && n2 >= n => {
                let rest = trimmed[n2..].trim();
                if rest.is_empty() {
                    fence = None;
                }
                out.push((i + 1, String::new()));
            }
            (Some(_), _) => out.push((i + 1, String::new())),
            (None, None) => out.push((i + 1, line.to_string())),
        }
    }
    out
}

/// `text` with every code span (a run of n backticks up to the next run of
/// exactly n) replaced by spaces; a run without its closing run stays.
fn strip_code_spans(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out: Vec<char> = Vec::with_capacity(chars.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '`' {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let n = chars[i..].iter().take_while(|&&c| c == '`').count();
        let mut j = i + n;
        let mut close = None;
        while j < chars.len() {
            if chars[j] == '`' {
                let m = chars[j..].iter().take_while(|&&c| c == '`').count();
                if m == n {
                    close = Some(j);
                    break;
                }
                j += m;
            } else {
                j += 1;
            }
        }
        match close {
            Some(j) => {
                // Keep line breaks so that line numbers stay right.
                out.extend(
                    chars[i..j + n]
                        .iter()
                        .map(|&c| if c == '\n' { '\n' } else { ' ' }),
                );
                i = j + n;
            }
            None => {
                out.extend(&chars[i..i + n]);
                i += n;
            }
        }
    }
    out.into_iter().collect()
}

/// One link: the line it starts on and its destination.
struct Link {
    line: usize,
    target: String,
}

/// The links of a page: inline links and images, reference definitions and
/// `href`s, outside code. Paragraphs (runs of non-blank lines) are parsed
/// whole, so a link's text may span lines.
fn links(text: &str) -> Vec<Link> {
    let lines = prose_lines(text);
    let mut found = Vec::new();
    let mut block: Vec<(usize, String)> = Vec::new();
    let flush = |block: &mut Vec<(usize, String)>, found: &mut Vec<Link>| {
        if block.is_empty() {
            return;
        }
        let first = block[0].0;
        let joined = block
            .iter()
            .map(|(_, l)| l.as_str())
            .collect::<Vec<_>>()
            .join("\n");
        block.clear();
        let prose = strip_code_spans(&joined);
        let line_of = |byte: usize| first + prose[..byte].matches('\n').count();
        // Inline links and images: `](` then the destination up to the
        // matching `)`.
        let bytes = prose.as_bytes();
        let mut from = 0;
        while let Some(k) = prose[from..].find("](") {
            let start = from + k + 2;
            let mut depth = 1;
            let mut end = start;
            while end < bytes.len() {
                match bytes[end] {
                    b'(' => depth += 1,
                    b')' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    b'\n' => break,
                    _ => {}
                }
                end += 1;
            }
            if depth == 0 {
                let dest = prose[start..end].trim();
                let dest = if let Some(rest) = dest.strip_prefix('<') {
                    rest.split('>').next().unwrap_or("")
                } else {
                    dest.split_whitespace().next().unwrap_or("")
                };
                found.push(Link {
                    line: line_of(start),
                    target: dest.to_string(),
                });
            }
            from = start;
        }
        // Reference definitions: `[label]: target` at the start of a line.
        for (n, l) in prose.split('\n').enumerate() {
            let t = l.trim_start();
            if t.starts_with('[') && !t.starts_with("[^") {
                if let Some(k) = t.find("]:") {
                    let dest = t[k + 2..].split_whitespace().next().unwrap_or("");
                    let dest = dest.trim_start_matches('<').trim_end_matches('>');
                    if !dest.is_empty() {
                        found.push(Link {
                            line: first + n,
                            target: dest.to_string(),
                        });
                    }
                }
            }
        }
        // HTML links.
        let mut from = 0;
        while let Some(k) = prose[from..].find("href=") {
            let start = from + k + 5;
            let rest = &prose[start..];
            let dest = match rest.chars().next() {
                Some(q @ ('"' | '\'')) => rest[1..].split(q).next().unwrap_or(""),
                _ => rest
                    .split(|c: char| c.is_whitespace() || c == '>')
                    .next()
                    .unwrap_or(""),
            };
            found.push(Link {
                line: line_of(start),
                target: dest.to_string(),
            });
            from = start;
        }
    };
    for (n, line) in lines {
        if line.trim().is_empty() {
            flush(&mut block, &mut found);
        } else {
            block.push((n, line));
        }
    }
    flush(&mut block, &mut found);
    found
}

/// The text a heading shows: inline code without its backticks, a link's
/// text without its destination, HTML tags dropped.
fn heading_text(raw: &str) -> String {
    let mut out = String::new();
    let chars: Vec<char> = raw.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            // `[text](dest)`: keep the text, skip the destination.
            ']' if chars.get(i + 1) == Some(&'(') => {
                let mut depth = 0;
                i += 1;
                while i < chars.len() {
                    match chars[i] {
                        '(' => depth += 1,
                        ')' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                }
            }
            '<' => {
                // An HTML tag, if it closes.
                match chars[i..].iter().position(|&c| c == '>') {
                    Some(k)
                        if chars
                            .get(i + 1)
                            .is_some_and(|c| c.is_ascii_alphabetic() || *c == '/') =>
                    {
                        i += k
                    }
                    _ => out.push('<'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    out
}

/// GitHub's anchor of a heading: lower case; letters, digits, `-` and `_`
/// kept; spaces become `-`; everything else dropped.
fn slug(heading: &str) -> String {
    heading_text(heading)
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| {
            if c == ' ' {
                Some('-')
            } else if c.is_alphanumeric() || c == '-' || c == '_' {
                Some(c)
            } else {
                None
            }
        })
        .collect()
}

/// Every anchor a page's headings produce (ATX headings outside code),
/// with GitHub's `-1`, `-2`, ... for repeated ones.
fn anchors(text: &str) -> HashSet<String> {
    let mut seen = HashSet::new();
    for (_, line) in prose_lines(text) {
        let t = line.trim_start_matches(' ');
        if line.len() - t.len() > 3 {
            continue;
        }
        let hashes = t.chars().take_while(|&c| c == '#').count();
        if !(1..=6).contains(&hashes) {
            continue;
        }
        let rest = &t[hashes..];
        if !(rest.is_empty() || rest.starts_with(' ') || rest.starts_with('\t')) {
            continue;
        }
        // A closing run of #s is not part of the heading.
        let rest = rest.trim();
        let rest = match rest.trim_end_matches('#') {
            r if r.len() < rest.len() && (r.is_empty() || r.ends_with(' ')) => r.trim_end(),
            _ => rest,
        };
        let base = slug(rest);
        let mut anchor = base.clone();
        let mut k = 0;
        while seen.contains(&anchor) {
            k += 1;
            anchor = format!("{base}-{k}");
        }
        seen.insert(anchor);
    }
    seen
}

/// `%20` and the like, as a browser decodes a path.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `a/b/../c` as `a/c`, without touching the file system; `None` when the
/// path climbs out of the repository.
fn normalise(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::Normal(p) => out.push(p),
            Component::RootDir | Component::Prefix(_) => {}
        }
    }
    Some(out)
}

fn has_scheme(target: &str) -> bool {
    match target.find(':') {
        Some(k) => {
            let scheme = &target[..k];
            !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
                && !target[..k].contains('/')
        }
        None => target.starts_with("//"),
    }
}

/// Every broken link of every page, as `page:line: target (why)`.
fn broken_links() -> Vec<String> {
    let root = root();
    let mut broken = Vec::new();
    for page in pages() {
        let text = fs::read_to_string(root.join(&page))
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", page.display()));
        let dir = page.parent().unwrap_or(Path::new("")).to_path_buf();
        for link in links(&text) {
            let target = link.target.as_str();
            let at = format!("{}:{}: `{target}`", page.display(), link.line);
            if target.is_empty() {
                broken.push(format!("{at} (empty destination)"));
                continue;
            }
            if has_scheme(target) {
                continue;
            }
            let (path, anchor) = match target.split_once('#') {
                Some((p, a)) => (p, Some(a)),
                None => (target, None),
            };
            let path = path.split('?').next().unwrap_or("");
            let file = if path.is_empty() {
                page.clone()
            } else {
                let decoded = percent_decode(path);
                let joined = if let Some(abs) = decoded.strip_prefix('/') {
                    PathBuf::from(abs)
                } else {
                    dir.join(decoded)
                };
                match normalise(&joined) {
                    Some(p) => p,
                    None => {
                        broken.push(format!("{at} (leaves the repository)"));
                        continue;
                    }
                }
            };
            let full = root.join(&file);
            if !full.exists() {
                broken.push(format!("{at} (no file {})", file.display()));
                continue;
            }
            let Some(anchor) = anchor else { continue };
            if file.extension().is_none_or(|e| e != "md") {
                continue; // anchors of other files (line numbers, ...) are not checked
            }
            if full.is_dir() {
                broken.push(format!("{at} (an anchor into a folder)"));
                continue;
            }
            let target_text = fs::read_to_string(&full).unwrap();
            if !anchors(&target_text).contains(&percent_decode(anchor)) {
                broken.push(format!(
                    "{at} (no heading of {} has the anchor #{anchor})",
                    file.display()
                ));
            }
        }
    }
    broken
}

#[test]
fn every_relative_link_and_anchor_resolves() {
    let broken = broken_links();
    assert!(
        broken.is_empty(),
        "{} broken link(s) in the documentation:\n{}",
        broken.len(),
        broken.join("\n")
    );
}

#[test]
fn the_readme_is_a_front_page() {
    let readme = fs::read_to_string(root().join("README.md")).unwrap();
    let lines: Vec<&str> = readme.lines().collect();
    assert!(
        lines.len() <= 300,
        "README.md has {} lines; at most 300 (move the detail to a page under docs/)",
        lines.len()
    );
    let test_command = lines
        .iter()
        .position(|l| l.trim_start().starts_with("cargo test --release"));
    match test_command {
        Some(i) => assert!(
            i < 80,
            "README.md's test command `cargo test --release` is on line {}; it must be within the first 80",
            i + 1
        ),
        None => panic!("README.md has no line starting with the test command `cargo test --release`"),
    }
}

#[test]
fn the_checker_reads_what_github_renders() {
    // Anchors: punctuation dropped, spaces kept as `-`, duplicates numbered.
    let page = "# Title\n\n## Across the theorem's range\n\n### `[task]` — the data model\n\n\
                ## Notes\n\n## Notes\n\n```sh\n# not a heading\n```\n\n### E6: the comparison in `reproduce`\n";
    let a = anchors(page);
    for want in [
        "title",
        "across-the-theorems-range",
        "task--the-data-model",
        "notes",
        "notes-1",
        "e6-the-comparison-in-reproduce",
    ] {
        assert!(a.contains(want), "{want} not in {a:?}");
    }
    assert!(!a.contains("not-a-heading"));
    // Links: across lines, images, code spans and fences skipped,
    // definitions and hrefs found.
    let page = "See [the\nsection](other.md#x) and ![fig](figures/a.svg).\n\n\
                `[not](a-link.md)` and\n\n```\n[nor](this.md)\n```\n\n\
                [ref]: defs.md#y\n\n<a href=\"page.html\">x</a>\n";
    let got: Vec<(usize, String)> = links(page)
        .into_iter()
        .map(|l| (l.line, l.target))
        .collect();
    assert_eq!(
        got,
        vec![
            (2, "other.md#x".to_string()),
            (2, "figures/a.svg".to_string()),
            (10, "defs.md#y".to_string()),
            (12, "page.html".to_string()),
        ]
    );
    assert!(has_scheme("https://example.org") && has_scheme("mailto:a@b.c"));
    assert!(!has_scheme("docs/a.md#b:c") && !has_scheme("#x"));
}
