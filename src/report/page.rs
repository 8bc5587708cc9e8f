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
    pub id: String,
    pub claim: String,
    pub measured: Value,
    pub held: bool,
}

/// A table of the report, also written as CSV.
#[derive(Clone, Debug, Default)]
pub(crate) struct Table {
    /// The CSV file's name, without `.csv`.
    pub(crate) name: String,
    pub(crate) header: Vec<String>,
    pub(crate) rows: Vec<Vec<String>>,
}

/// One experiment's part of the report.
#[derive(Debug, Default)]
pub(crate) struct Section {
    pub(crate) title: String,
    /// Markdown: paragraphs, and lists of `* ` lines.
    pub(crate) text: String,
    /// Figures by file name (without `.svg`/`.png`), in reading order.
    pub(crate) figures: Vec<(String, Chart)>,
    pub(crate) tables: Vec<Table>,
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

/// A claim's measured figures in words (`claims.json` keeps the JSON).
fn describe(measured: &Value) -> String {
    let number = |key: &str| measured.get(key).and_then(Value::as_f64);
    if let (Some(held), Some(seeds)) = (number("seeds_held"), number("seeds")) {
        let mut s = format!("{held} of {seeds} seeds");
        if let Some(mean) = number("mean_rel_mse") {
            s.push_str(&format!(", mean relative MSE {mean:.3}"));
        }
        return s;
    }
    if let Some(slope) = number("slope") {
        let mut s = format!("slope {slope:.2}");
        if let Some([lo, hi]) = measured
            .get("ci95")
            .and_then(Value::as_array)
            .and_then(|a| <&[Value; 2]>::try_from(a.as_slice()).ok())
        {
            s.push_str(&format!(
                " (95 % interval {:.2}–{:.2})",
                lo.as_f64().unwrap_or(f64::NAN),
                hi.as_f64().unwrap_or(f64::NAN)
            ));
        }
        if let Some(n) = number("recoveries") {
            s.push_str(&format!(", {n} recoveries"));
        }
        return s;
    }
    if let Some(gap) = number("largest_gap") {
        return format!("largest gap {:.2} percentage points", 100.0 * gap);
    }
    match measured.as_object() {
        Some(fields) => fields
            .iter()
            .map(|(k, v)| format!("{} {v}", k.replace('_', " ")))
            .collect::<Vec<_>>()
            .join(", "),
        None => measured.to_string(),
    }
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
    // Figures scale down with a narrow window; text columns read from the
    // left, numbers from the right.
    let mut html = format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>clustermoe reproduction report</title>\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <style>body{{font-family:sans-serif;max-width:900px;margin:2em auto;padding:0 1em;line-height:1.4}}\
         table{{border-collapse:collapse;margin-bottom:1em}}td,th{{border:1px solid #ccc;padding:2px 8px;text-align:right}}\
         th{{background:#f4f4f4}}table.claims td,table.claims th{{text-align:left}}\
         figure{{margin:1.5em 0 0.5em}}figure svg{{max-width:100%;height:auto}}\
         figcaption{{color:#555;font-size:90%}}\
         .held{{color:#060}}.failed{{color:#b00;font-weight:bold}}</style></head>\
         <body><h1>clustermoe reproduction report</h1>{}",
        text_html(&intro)
    );
    let claims: Vec<Claim> = sections.iter().flat_map(|s| s.claims.clone()).collect();
    md.push_str("## Claims\n\n| claim | measured | held |\n|---|---|---|\n");
    html.push_str(
        "<h2>Claims</h2><table class=\"claims\"><tr><th>claim</th><th>measured</th><th>held</th></tr>",
    );
    for c in &claims {
        md.push_str(&format!(
            "| {} | {} | {} |\n",
            c.claim,
            describe(&c.measured),
            if c.held { "yes" } else { "**no**" }
        ));
        html.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td class=\"{}\">{}</td></tr>",
            inline_html(&c.claim),
            html_escape(&describe(&c.measured)),
            if c.held { "held" } else { "failed" },
            if c.held { "yes" } else { "no" }
        ));
    }
    md.push('\n');
    html.push_str("</table>");
    for s in sections {
        md.push_str(&format!("## {}\n\n{}\n\n", s.title, s.text));
        html.push_str(&format!(
            "<h2>{}</h2>{}",
            html_escape(&s.title),
            text_html(&s.text)
        ));
        // Each table right after the last figure drawn from it (a figure
        // named like the table, or like it with a suffix), so a reader
        // finds the numbers under their picture; the rest at the end.
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
                write_table(out, t, &mut md, &mut html)?;
            }
        }
        for t in tables {
            write_table(out, t, &mut md, &mut html)?;
        }
    }
    html.push_str("</body></html>\n");
    output::write_atomic(&out.join("report.md"), md.as_bytes())?;
    output::write_atomic(&out.join("report.html"), html.as_bytes())?;
    output::write_json(&out.join("claims.json"), &claims)?;
    Ok(claims)
}

/// Writes `t` as CSV beside the report and appends it to both reports.
fn write_table(out: &Path, t: &Table, md: &mut String, html: &mut String) -> Result<()> {
    output::write_atomic(&out.join(format!("{}.csv", t.name)), csv_text(t).as_bytes())?;
    md.push_str(&format!(
        "Table `{}.csv`:\n\n{}\n",
        t.name,
        markdown_table(t)
    ));
    html.push_str(&format!(
        "<p>Table <code>{}.csv</code></p><table><tr>",
        t.name
    ));
    for h in &t.header {
        html.push_str(&format!("<th>{}</th>", html_escape(h)));
    }
    html.push_str("</tr>");
    for row in &t.rows {
        html.push_str("<tr>");
        for cell in row {
            html.push_str(&format!("<td>{}</td>", html_escape(cell)));
        }
        html.push_str("</tr>");
    }
    html.push_str("</table>");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_follows_the_last_figure_drawn_from_it() {
        use crate::report::figure::{Chart, Legend, Mark, Series};
        let chart = |title: &str| Chart {
            title: title.into(),
            x_label: "x".into(),
            y_label: "y".into(),
            log_x: false,
            log_y: false,
            y_range: None,
            series: vec![Series {
                label: "s".into(),
                points: vec![(0.0, 0.0), (1.0, 1.0)],
                mark: Mark::Line,
            }],
            legend: Legend::UpperLeft,
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
            claims: vec![],
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
    }
}
