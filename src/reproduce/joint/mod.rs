//! E6 Joint training: does an MoE trained the way practitioners train them
//! (every parameter at once by Adam on the squared loss) also
//! detect the latent clusters, and does the vanilla network trained the
//! same way still fail? On the default task, at the staged algorithm's
//! sample budget, beside E1's staged runs of the same seeds; then a budget
//! sweep of one variant. Its own folder because its variants and its
//! pre-registered hypotheses are what a reader changes: `variants.rs` (the
//! variants, their runs and curves over training), `measured.rs` (what
//! each seed measured), `claims.rs` (the hypotheses as claims),
//! `budget.rs` (the budget sweep), `figures.rs` (the figures).

mod budget;
mod claims;
mod figures;
mod measured;
mod variants;

use budget::Budget;
use measured::{Measured, Staged};
use variants::{VariantRuns, REFERENCE};

use crate::error::Result;
use crate::reproduce::runs::Runs;
use crate::reproduce::{Options, Section, Table};

// The hypotheses, written before E6 was first measured: the jointly trained
// MoE specialises (purity >= 0.9) and beats the jointly trained vanilla
// network in 90 % of seeds; the vanilla network fails as in E1 (relative MSE
// >= 0.40, w*_g overlap < 0.5, every seed); joint training reaches the
// staged MoE's median error within the largest budget swept.
const PURITY_BAR: f64 = 0.9;
const VANILLA_BAR: f64 = 0.40;

/// E6: joint training against staged training on the default task.
/// `staged` holds E1's default-task runs (seeds 1 to at least E6's).
pub(super) fn joint(
    opts: &Options,
    staged: &Runs,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<Section> {
    let seeds = opts.seeds(3, 10);
    let staged = Staged::of(staged, seeds);
    let mut runs = Vec::new();
    for (colour, variant) in variants::variants().into_iter().enumerate() {
        runs.push(VariantRuns::run(opts, variant, seeds, colour, progress)?);
    }
    let reference = runs
        .iter()
        .find(|v| v.variant.key == REFERENCE)
        .expect("the reference variant is among the variants");
    let joint_vanilla = Measured::vanilla(&reference.runs, seeds);
    let mut text = vec![introduction(seeds)];
    let mut claims = Vec::new();
    for v in &runs {
        claims.extend(claims::variant_claims(v, &joint_vanilla));
        text.push(claims::variant_line(v));
    }
    claims.push(claims::vanilla_claim(&joint_vanilla));
    text.push(claims::vanilla_line(&joint_vanilla, &staged));
    let budget = Budget::sweep(opts, &reference.runs, &staged, progress)?;
    claims.push(budget.claim(staged.samples));
    text.extend(budget.text(staged.samples));
    let var_y = reference.runs.rows[0].summary.var_y;
    let mut figures = vec![("e6_error".into(), figures::error_chart(&budget, &staged))];
    figures.extend(figures::over_training(&runs, var_y, seeds));
    Ok(Section {
        title: "E6 Joint training: the MoE and the vanilla network trained end to end".into(),
        text: text.join("\n"),
        claims,
        figures,
        tables: vec![table(&staged, &runs, &joint_vanilla), budget.table()],
    })
}

/// The section's opening paragraph: the set-up and the hypotheses.
fn introduction(seeds: i64) -> String {
    format!(
        "Every parameter of the MoE (router, first layers, biases, second layers) trained at once by Adam on the squared loss \
         (`moe.training = \"joint\"`, defaults of `[joint]`), on the default task at the staged algorithm's budget, \
         seeds 1–{seeds}; beside E1's staged runs of the same seeds. The vanilla network of M J neurons is trained the same way \
         on the same samples. Hypotheses, stated before measuring: the jointly trained MoE specialises (routing purity >= {PURITY_BAR}) \
         and beats the jointly trained vanilla network in 90 % of seeds; the vanilla network trained jointly still fails as in E1 \
         (relative MSE >= {VANILLA_BAR:.2} with w*_g overlap < 0.5 in every seed); joint training reaches the staged MoE's median error \
         within the largest budget swept. (A five-seed pilot, `cargo run --release --example joint`, had measured the joint \
         vanilla network before E6 was written; the third hypothesis is the paper's expectation, kept as it would state it.)"
    )
}

/// Table `e6`: the staged models, then each variant's MoE and, after the
/// reference variant's, the joint vanilla network.
fn table(staged: &Staged, runs: &[VariantRuns], joint_vanilla: &Measured) -> Table {
    let mut table = Table::new(
        "e6",
        &[
            "model",
            "seeds",
            "samples",
            "rel_mse_median",
            "rel_mse_min",
            "rel_mse_max",
            "purity_mean",
            "local_overlap_mean",
            "global_overlap_mean",
            "dead_experts_mean",
            "router_entropy_mean",
        ],
    );
    table
        .rows
        .push(staged.moe.row("staged MoE", staged.samples));
    table
        .rows
        .push(staged.vanilla.row("staged vanilla", staged.samples));
    for v in runs {
        table.rows.push(v.moe.row(v.variant.label, v.samples));
        if v.variant.key == REFERENCE {
            table
                .rows
                .push(joint_vanilla.row("joint vanilla", v.samples));
        }
    }
    table
}
