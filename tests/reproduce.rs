//! `clustermoe reproduce --quick` end to end: the report, its figures and
//! tables, and the claims it measures.

use std::process::Command;

use serde_json::Value;

const FIGURES: [&str; 13] = [
    "e1_c2",
    "e1_c4",
    "e1_k4",
    "e1_several",
    "e1_d128",
    "e2_dynamics",
    "e2_phase_one",
    "e3_k3",
    "e3_k3_vanilla",
    "e4_c2",
    "e4_c4",
    "e5_purity",
    "e5_error",
];
const TABLES: [&str; 9] = [
    "e1_c2",
    "e1_c4",
    "e1_k4",
    "e1_several",
    "e1_d128",
    "e3_k3",
    "e4_c2",
    "e4_c4",
    "e5",
];

#[test]
fn quick_reproduction_writes_the_report_and_its_claims_hold() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("reproduction");
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_clustermoe"))
            .args([
                "reproduce",
                "--quick",
                "--jobs",
                "2",
                "-q",
                "--out",
                out.to_str().unwrap(),
            ])
            .output()
            .unwrap()
    };
    let first = run();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );

    for name in FIGURES {
        let svg = std::fs::read_to_string(out.join(format!("{name}.svg"))).unwrap();
        assert!(svg.starts_with("<svg"), "{name}.svg");
        let png = std::fs::read(out.join(format!("{name}.png"))).unwrap();
        assert_eq!(&png[1..4], b"PNG", "{name}.png");
    }
    for name in TABLES {
        let csv = std::fs::read_to_string(out.join(format!("{name}.csv"))).unwrap();
        assert!(csv.lines().count() >= 3, "{name}.csv has a header and rows");
    }

    let claims: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(out.join("claims.json")).unwrap()).unwrap();
    let ids: Vec<&str> = claims.iter().map(|c| c["id"].as_str().unwrap()).collect();
    for id in [
        "E1.c2.moe",
        "E1.c2.vanilla",
        "E1.c4.moe",
        "E1.c4.vanilla",
        "E1.k4.moe",
        "E1.k4.vanilla",
        "E1.several.moe",
        "E1.several.vanilla",
        "E1.d128.moe",
        "E1.d128.vanilla",
        "E3.slope_k3",
        "E5.purity",
    ] {
        assert!(ids.contains(&id), "claims.json lacks {id}: {ids:?}");
    }
    for c in &claims {
        assert_eq!(c["held"], true, "claim failed: {c}");
    }
    let slope = claims.iter().find(|c| c["id"] == "E3.slope_k3").unwrap()["measured"]["slope"]
        .as_f64()
        .unwrap();
    assert!((1.5..=2.5).contains(&slope));

    // The HTML report is self-contained: every figure inline, nothing fetched.
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert_eq!(html.matches("<svg").count(), FIGURES.len());
    assert!(!html.contains("src=") && !html.contains("href=\"http"));
    // ... and holds no Markdown left unrendered: list markers, bold, code
    // spans or raw JSON outside the figures.
    let text: String = html
        .split("<svg")
        .enumerate()
        .map(|(i, part)| {
            if i == 0 {
                part
            } else {
                part.split_once("</svg>").map_or("", |p| p.1)
            }
        })
        .collect();
    for raw in ["<p>* ", "<br>* ", "**", "`", "{\""] {
        assert!(!text.contains(raw), "report.html holds unrendered {raw:?}");
    }
    assert!(text.contains("<li>") && text.contains("of 10 seeds"));
    // The Markdown report links figures that exist.
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    for name in FIGURES {
        assert!(
            md.contains(&format!("({name}.svg)")),
            "report.md lacks {name}"
        );
    }

    // Run again: every run is reused, the report is the same.
    let second = run();
    assert!(second.status.success());
    assert_eq!(std::fs::read_to_string(out.join("report.md")).unwrap(), md);
}
