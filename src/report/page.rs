//! The reproduction report as a reader sees it: `report.md`, a
//! self-contained `report.html` (figures inline, nothing fetched), every
//! figure as `.svg` and `.png`, every table as `.csv`, and `claims.json`.
//! Kept apart from the experiments of [`crate::reproduce`] because it only
//! renders: what it writes may change for a reader's sake while the
//! measured claims stay byte for byte the same.

use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use crate::error::Result;
use crate::report::figure::svg_to_png;
use crate::report::figure::Chart;
use crate::store::output;

/// A claim, the figure measured for it and whether it held.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Claim {
    /// A stable name: the experiment, the case, the criterion
    /// (`E1.c2.moe`).
    pub id: String,
    /// The claim in words, with its bar.
    pub claim: String,
    /// The figures measured for it, as JSON (seeds that met it, means,
    /// slopes, ...).
    pub measured: Value,
    /// Whether it held.
    pub held: bool,
    /// Why a claim failed, in words, from the measured values and the
    /// bar (which seeds missed which criterion, by how much); only when
    /// `held` is false, so that the claims that hold read as before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

impl Claim {
    /// A claim whose explanation `why` is computed only when it failed.
    pub fn new(
        id: impl Into<String>,
        claim: impl Into<String>,
        measured: Value,
        held: bool,
        why: impl FnOnce() -> String,
    ) -> Self {
        Claim {
            id: id.into(),
            claim: claim.into(),
            measured,
            held,
            why: (!held).then(why),
        }
    }
}

/// A whole number with thousands separators: 2,288,192.
pub fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A number for a reader: whole numbers with thousands separators,
/// fractions with at most four decimals (no trailing zeros).
pub fn grouped_f64(x: f64) -> String {
    if !x.is_finite() {
        return x.to_string();
    }
    let sign = if x < 0.0 { "-" } else { "" };
    let a = x.abs();
    if a == a.round() && a < 1e18 {
        return format!("{sign}{}", grouped(a as u64));
    }
    let text = format!("{a:.4}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let whole = grouped(whole.parse().unwrap_or(0));
    if fraction.is_empty() {
        format!("{sign}{whole}")
    } else {
        format!("{sign}{whole}.{fraction}")
    }
}

/// A table of the report, also written as CSV.
#[derive(Clone, Debug, Default)]
pub(crate) struct Table {
    /// The CSV file's name, without `.csv`.
    pub(crate) name: String,
    /// The column names.
    pub(crate) header: Vec<String>,
    /// The cells, row by row.
    pub(crate) rows: Vec<Vec<String>>,
}

impl Table {
    /// A table without rows yet: `name` its CSV file's, `header` its columns.
    pub(crate) fn new(name: impl Into<String>, header: &[&str]) -> Self {
        Table {
            name: name.into(),
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }
}

/// One experiment's part of the report.
#[derive(Debug, Default)]
pub(crate) struct Section {
    /// The heading: the experiment's number and question.
    pub(crate) title: String,
    /// Markdown: paragraphs, and lists of `* ` lines.
    pub(crate) text: String,
    /// Figures by file name (without `.svg`/`.png`), in reading order.
    pub(crate) figures: Vec<(String, Chart)>,
    /// Tables, each placed after the last figure drawn from it.
    pub(crate) tables: Vec<Table>,
    /// The claims it measured, in the report's order.
    pub(crate) claims: Vec<Claim>,
}

fn csv_text(t: &Table) -> String {
    let mut out = t.header.join(",");
    out.push('\n');
    for row in &t.rows {
        out.push_str(&row.join(","));
        out.push('\n');
    }
    out
}

fn markdown_table(t: &Table) -> String {
    let mut out = format!(
        "| {} |\n|{}|\n",
        t.header.join(" | "),
        vec!["---:"; t.header.len()].join("|")
    );
    for row in &t.rows {
        out.push_str(&format!("| {} |\n", row.join(" | ")));
    }
    out
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Escapes `s` and renders its inline Markdown: `code` and **bold**.
fn inline_html(s: &str) -> String {
    let mut out = String::new();
    for (i, part) in html_escape(s).split('`').enumerate() {
        if i % 2 == 1 {
            out.push_str(&format!("<code>{part}</code>"));
            continue;
        }
        for (j, piece) in part.split("**").enumerate() {
            if j % 2 == 1 {
                out.push_str(&format!("<strong>{piece}</strong>"));
            } else {
                out.push_str(piece);
            }
        }
    }
    out
}

/// A section's Markdown text as HTML: paragraphs, and `* ` lines as lists.
fn text_html(text: &str) -> String {
    let mut out = String::new();
    let mut in_list = false;
    let mut paragraph: Vec<&str> = Vec::new();
    let flush = |paragraph: &mut Vec<&str>, out: &mut String| {
        if !paragraph.is_empty() {
            out.push_str(&format!("<p>{}</p>", inline_html(&paragraph.join(" "))));
            paragraph.clear();
        }
    };
    for line in text.lines() {
        if let Some(item) = line.strip_prefix("* ") {
            flush(&mut paragraph, &mut out);
            if !in_list {
                out.push_str("<ul>");
                in_list = true;
            }
            out.push_str(&format!("<li>{}</li>", inline_html(item)));
            continue;
        }
        if in_list {
            out.push_str("</ul>");
            in_list = false;
        }
        if line.trim().is_empty() {
            flush(&mut paragraph, &mut out);
        } else {
            paragraph.push(line);
        }
    }
    flush(&mut paragraph, &mut out);
    if in_list {
        out.push_str("</ul>");
    }
    out
}

/// A measured value in words: numbers with thousands separators, null as
/// "—", lists as short text (a list of pairs as "a → b, c → d").
fn value_text(v: &Value) -> String {
    match v {
        Value::Null => "—".into(),
        Value::Bool(b) => if *b { "yes" } else { "no" }.into(),
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => grouped(u),
            (None, Some(i)) => format!("-{}", grouped(i.unsigned_abs())),
            _ => grouped_f64(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .map(|item| match item.as_array().map(Vec::as_slice) {
                Some([a, b]) => format!("{} → {}", value_text(a), value_text(b)),
                Some(inner) => format!(
                    "({})",
                    inner.iter().map(value_text).collect::<Vec<_>>().join(", ")
                ),
                None => value_text(item),
            })
            .collect::<Vec<_>>()
            .join(", "),
        Value::Object(fields) => fields
            .iter()
            .map(|(k, v)| format!("{} {}", key_text(k), value_text(v)))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// A field's name in words: `median_rel_mse_by_multiple` as "median
/// relative MSE by multiple".
fn key_text(key: &str) -> String {
    let words = format!(" {} ", key.replace('_', " "));
    words
        .replace(" rel mse ", " relative MSE ")
        .replace(" log log ", " log-log ")
        .replace(" ci95 ", " 95 % interval ")
        .trim()
        .to_string()
}

/// A claim's measured figures in words (`claims.json` keeps the JSON): the
/// usual lead ("9 of 10 seeds", "slope 2.24 (95 % interval ...)", "largest
/// gap ..."), then every other field as "name value", apart by semicolons.
fn describe(measured: &Value) -> String {
    let Some(fields) = measured.as_object() else {
        return value_text(measured);
    };
    let number = |key: &str| fields.get(key).and_then(Value::as_f64);
    let mut used: Vec<&str> = Vec::new();
    let mut parts: Vec<String> = Vec::new();
    if let (Some(held), Some(seeds)) = (number("seeds_held"), number("seeds")) {
        parts.push(format!("{held} of {seeds} seeds"));
        used.extend(["seeds_held", "seeds"]);
        if let Some(mean) = number("mean_rel_mse") {
            parts[0].push_str(&format!(", mean relative MSE {mean:.3}"));
            used.push("mean_rel_mse");
        }
    }
    if let Some(slope) = number("slope") {
        let mut s = format!("slope {slope:.2}");
        used.push("slope");
        if let Some([lo, hi]) = fields
            .get("ci95")
            .and_then(Value::as_array)
            .and_then(|a| <&[Value; 2]>::try_from(a.as_slice()).ok())
        {
            s.push_str(&format!(
                " (95 % interval {:.2}–{:.2})",
                lo.as_f64().unwrap_or(f64::NAN),
                hi.as_f64().unwrap_or(f64::NAN)
            ));
            used.push("ci95");
        }
        if let Some(n) = number("recoveries") {
            s.push_str(&format!(", {n} recoveries"));
            used.push("recoveries");
        }
        parts.push(s);
    }
    if let Some(gap) = number("largest_gap") {
        parts.push(format!("largest gap {:.2} percentage points", 100.0 * gap));
        used.push("largest_gap");
    }
    for (k, v) in fields.iter().filter(|(k, _)| !used.contains(&k.as_str())) {
        parts.push(format!("{} {}", key_text(k), value_text(v)));
    }
    parts.join("; ")
}

/// A Markdown table cell: a `|` would end it.
fn md_cell(s: &str) -> String {
    s.replace('|', "\\|")
}

/// Writes the sections' figures and tables, both reports and `claims.json`
/// under `out`; returns the claims in report order.
pub(crate) fn write(out: &Path, sections: &[Section], quick: bool) -> Result<Vec<Claim>> {
    let intro = format!(
        "Mode: {}. Every number below comes from the runs under `sweeps/`; every figure is also an `.svg` and a \
         `.png` file and every table a `.csv` file beside this report.",
        if quick { "quick" } else { "full" }
    );
    let mut md = format!("# clustermoe reproduction report\n\n{intro}\n\n");
    let mut html = html_head(&intro);
    let claims: Vec<Claim> = sections.iter().flat_map(|s| s.claims.clone()).collect();
    write_claims(&claims, &mut md, &mut html);
    for s in sections {
        write_section(out, s, &mut md, &mut html)?;
    }
    html.push_str("</body></html>\n");
    output::write_atomic(&out.join("report.md"), md.as_bytes())?;
    output::write_atomic(&out.join("report.html"), html.as_bytes())?;
    output::write_json(&out.join("claims.json"), &claims)?;
    Ok(claims)
}

/// The HTML report's head (its style) and title, then `intro`.
fn html_head(intro: &str) -> String {
    // Figures scale down with a narrow window; text columns read from the
    // left, numbers from the right.
    format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>clustermoe reproduction report</title>\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <style>body{{font-family:sans-serif;max-width:900px;margin:2em auto;padding:0 1em;line-height:1.4}}\
         table{{border-collapse:collapse;margin-bottom:1em}}td,th{{border:1px solid #ccc;padding:2px 8px;text-align:right}}\
         th{{background:#f4f4f4}}table.claims td,table.claims th{{text-align:left}}\
         .wide{{overflow-x:auto;max-width:100%;margin-bottom:1em}}.wide table{{margin-bottom:0}}\
         .wide th{{vertical-align:bottom}}td.t{{text-align:left}}\
         figure{{margin:1.5em 0 0.5em}}figure svg{{max-width:100%;height:auto}}\
         figcaption{{color:#555;font-size:90%}}\
         .held{{color:#060}}.failed span{{color:#b00;font-weight:bold}}.why{{color:#333;font-size:90%}}\
         table.claims{{width:100%}}table.claims td{{vertical-align:top}}table.claims td:nth-child(1){{width:44%}}table.claims td:nth-child(2){{width:30%}}</style></head>\
         <body><h1>clustermoe reproduction report</h1>{}",
        text_html(intro)
    )
}

/// Appends the table of claims to both reports: each claim, its measured
/// figures in words and its verdict (a failed one with why).
fn write_claims(claims: &[Claim], md: &mut String, html: &mut String) {
    md.push_str("## Claims\n\n| claim | measured | held |\n|---|---|---|\n");
    html.push_str(
        "<h2>Claims</h2><table class=\"claims\"><tr><th>claim</th><th>measured</th><th>held</th></tr>",
    );
    for c in claims {
        let verdict = match (&c.held, &c.why) {
            (true, _) => "yes".to_string(),
            (false, Some(why)) => format!("**no**: {}", md_cell(why)),
            (false, None) => "**no**".to_string(),
        };
        md.push_str(&format!(
            "| {} | {} | {verdict} |\n",
            md_cell(&c.claim),
            md_cell(&describe(&c.measured)),
        ));
        let why = c.why.as_deref().map_or(String::new(), |w| {
            format!("<div class=\"why\">{}</div>", html_escape(w))
        });
        html.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td class=\"{}\"><span>{}</span>{why}</td></tr>",
            inline_html(&c.claim),
            html_escape(&describe(&c.measured)),
            if c.held { "held" } else { "failed" },
            if c.held { "yes" } else { "no" }
        ));
    }
    md.push('\n');
    html.push_str("</table>");
}

/// Writes a section's figures (SVG and PNG) and tables (CSV) under `out`
/// and appends the section to both reports: its title and text, then each
/// figure, each table right after the last figure drawn from it (a figure
/// named like the table, or like it with a suffix), so a reader finds the
/// numbers under their picture; the rest at the end.
fn write_section(out: &Path, s: &Section, md: &mut String, html: &mut String) -> Result<()> {
    md.push_str(&format!("## {}\n\n{}\n\n", s.title, s.text));
    html.push_str(&format!(
        "<h2>{}</h2>{}",
        html_escape(&s.title),
        text_html(&s.text)
    ));
    let mut tables: Vec<&Table> = s.tables.iter().collect();
    for (i, (name, chart)) in s.figures.iter().enumerate() {
        let svg = chart.to_svg()?;
        output::write_atomic(&out.join(format!("{name}.svg")), svg.as_bytes())?;
        output::write_atomic(&out.join(format!("{name}.png")), &svg_to_png(&svg)?)?;
        md.push_str(&format!("![{}]({name}.svg)\n\n", chart.title));
        html.push_str(&format!(
            "<figure>{svg}<figcaption><code>{name}.svg</code>, <code>{name}.png</code></figcaption></figure>"
        ));
        let drawn_from = |t: &Table, figure: &str| {
            figure == t.name || figure.starts_with(&format!("{}_", t.name))
        };
        let (now, later): (Vec<&Table>, Vec<&Table>) = tables.into_iter().partition(|t| {
            drawn_from(t, name) && !s.figures[i + 1..].iter().any(|(f, _)| drawn_from(t, f))
        });
        tables = later;
        for t in now {
            write_table(out, t, md, html)?;
        }
    }
    for t in tables {
        write_table(out, t, md, html)?;
    }
    Ok(())
}

/// Writes `t` as CSV beside the report and appends it to both reports.
fn write_table(out: &Path, t: &Table, md: &mut String, html: &mut String) -> Result<()> {
    output::write_atomic(&out.join(format!("{}.csv", t.name)), csv_text(t).as_bytes())?;
    md.push_str(&format!(
        "Table `{}.csv`:\n\n{}\n",
        t.name,
        markdown_table(t)
    ));
    // A wide table scrolls in its own box, and its headers may break
    // after an underscore: nothing is cut at the page's edge.
    html.push_str(&format!(
        "<p>Table <code>{}.csv</code></p><div class=\"wide\"><table><tr>",
        t.name
    ));
    for h in &t.header {
        html.push_str(&format!(
            "<th>{}</th>",
            html_escape(h).replace('_', "_<wbr>")
        ));
    }
    html.push_str("</tr>");
    for row in &t.rows {
        html.push_str("<tr>");
        for cell in row {
            // Words read from the left, numbers from the right.
            let words = !cell.is_empty() && cell.parse::<f64>().is_err();
            html.push_str(&format!(
                "<td{}>{}</td>",
                if words { " class=\"t\"" } else { "" },
                html_escape(cell)
            ));
        }
        html.push_str("</tr>");
    }
    html.push_str("</table></div>");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_follows_the_last_figure_drawn_from_it() {
        use crate::report::figure::{Chart, Mark, Series};
        let chart = |title: &str| Chart {
            title: title.into(),
            x_label: "x".into(),
            y_label: "y".into(),
            series: vec![Series::new("s", Mark::Line, vec![(0.0, 0.0), (1.0, 1.0)])],
            ..Chart::default()
        };
        let table = |name: &str| Table {
            name: name.into(),
            header: vec!["a".into()],
            rows: vec![vec!["1".into()]],
        };
        let section = Section {
            title: "S".into(),
            text: "Text.".into(),
            figures: vec![
                ("s_a".into(), chart("A")),
                ("s_a_more".into(), chart("A more")),
                ("s_b".into(), chart("B")),
            ],
            tables: vec![table("s_b"), table("s_a"), table("other")],
            claims: vec![
                Claim::new("A", "a holds", serde_json::json!({"x": 1}), true, || {
                    unreachable!("no why for a claim that holds")
                }),
                Claim::new("B", "b fails", serde_json::json!({"x": 2}), false, || {
                    "seed 3: overlap 0.42 < 0.9".into()
                }),
            ],
        };
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &[section], true).unwrap();
        let md = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
        let order: Vec<&str> = md
            .lines()
            .filter(|l| l.starts_with("![") || l.starts_with("Table"))
            .collect();
        assert_eq!(
            order,
            [
                "![A](s_a.svg)",
                "![A more](s_a_more.svg)",
                "Table `s_a.csv`:",
                "![B](s_b.svg)",
                "Table `s_b.csv`:",
                "Table `other.csv`:",
            ]
        );
        for file in ["s_a.svg", "s_a.png", "s_a_more.svg", "s_b.png", "other.csv"] {
            assert!(dir.path().join(file).exists(), "{file}");
        }
        let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
        assert!(html.contains("Mode: quick."));
        // The failed claim says why, beside its verdict; claims.json keeps
        // `why` off the claim that held.
        assert!(md.contains("| b fails | x 2 | **no**: seed 3: overlap 0.42 < 0.9 |"));
        assert!(html.contains("<div class=\"why\">seed 3: overlap 0.42 &lt; 0.9</div>"));
        let claims = std::fs::read_to_string(dir.path().join("claims.json")).unwrap();
        let claims: Vec<serde_json::Value> = serde_json::from_str(&claims).unwrap();
        assert!(claims[0].get("why").is_none());
        assert_eq!(claims[1]["why"], "seed 3: overlap 0.42 < 0.9");
        // Tables scroll in their own box; headers may break after `_`.
        assert!(html.contains("<div class=\"wide\"><table><tr><th>a</th>"));
    }

    #[test]
    fn markdown_text_becomes_html_for_a_reader() {
        let html = text_html("Intro with `code` and **bold**.\n* one\n* two\n\nAfter.");
        assert_eq!(
            html,
            "<p>Intro with <code>code</code> and <strong>bold</strong>.</p>\
             <ul><li>one</li><li>two</li></ul><p>After.</p>"
        );
        let claim = serde_json::json!({"mean_rel_mse": 0.0573, "seeds": 10, "seeds_held": 9});
        assert_eq!(describe(&claim), "9 of 10 seeds, mean relative MSE 0.057");
        let slope = serde_json::json!({"ci95": [1.79, 2.68], "recoveries": 12, "slope": 2.2352});
        assert_eq!(
            describe(&slope),
            "slope 2.24 (95 % interval 1.79–2.68), 12 recoveries"
        );
        let gap = serde_json::json!({"largest_gap": 0.0027});
        assert_eq!(describe(&gap), "largest gap 0.27 percentage points");
        // Every field is said, numbers grouped, lists as text, null as a dash.
        let budget = serde_json::json!({
            "fitted_samples_to_staged_error": 10635493.0,
            "median_rel_mse_by_multiple": [[0.25, 0.2971], [1.0, 0.073]],
            "samples": null,
            "log_log_slope_from_staged_budget": -0.6127,
            "seeds": 3,
            "seeds_held": 0,
            "max_global_overlap": 0.9601,
        });
        assert_eq!(
            describe(&budget),
            "0 of 3 seeds; fitted samples to staged error 10,635,493; \
             log-log slope from staged budget -0.6127; max global overlap 0.9601; \
             median relative MSE by multiple 0.25 → 0.2971, 1 → 0.073; samples —"
        );
        assert_eq!(grouped(2288192), "2,288,192");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped_f64(-1234567.25), "-1,234,567.25");
        assert_eq!(grouped_f64(0.5), "0.5");
    }
}
