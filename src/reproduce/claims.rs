//! Claims about each seed, as E1 and E6 make them: a claim holds when
//! enough seeds meet it (90 % of them, or every one), and a failed claim
//! says why: how many seeds met it against how many it needed, then what
//! each seed that missed missed, alike misses said once.

use serde_json::Value;

use super::Claim;

/// How many of a claim's seeds must meet it.
#[derive(Clone, Copy, Debug)]
pub(super) enum Quorum {
    /// At least 90 % of them (rounded up).
    Ninety,
    /// Every one.
    Every,
}

/// A claim about each seed, tallied: how many seeds met it, how many it
/// needs, and what each seed missed (nothing when it met it).
pub(super) struct Tally<'a> {
    seeds: &'a [u64],
    misses: Vec<Vec<String>>,
    /// The seeds that met it.
    pub(super) held: usize,
    /// The seeds it needs.
    pub(super) needed: usize,
}

impl<'a> Tally<'a> {
    /// Tallies `seeds` under `quorum`; `miss(i)` says what `seeds[i]`
    /// missed, empty when it met the claim.
    pub(super) fn new(
        seeds: &'a [u64],
        quorum: Quorum,
        miss: impl Fn(usize) -> Vec<String>,
    ) -> Self {
        let misses: Vec<Vec<String>> = (0..seeds.len()).map(miss).collect();
        let held = misses.iter().filter(|m| m.is_empty()).count();
        let needed = match quorum {
            Quorum::Ninety => (9 * seeds.len()).div_ceil(10),
            Quorum::Every => seeds.len(),
        };
        Tally {
            seeds,
            misses,
            held,
            needed,
        }
    }

    /// The claim `id`, worded `claim`, with its `measured` figures: held
    /// when enough seeds met it, else saying which seeds missed what.
    pub(super) fn claim(
        &self,
        id: impl Into<String>,
        claim: impl Into<String>,
        measured: Value,
    ) -> Claim {
        Claim::new(id, claim, measured, self.held >= self.needed, || {
            seeds_missed(self.seeds, self.held, self.needed, |i| {
                self.misses[i].clone()
            })
        })
    }
}

/// What a vanilla network that should fail (relative MSE >= `mse_bar`,
/// w*_g overlap < `overlap_bar`: E1's is the chance level of the best of
/// its neurons, `metrics::chance_overlap`) did instead, from its relative
/// MSE `e` and best w*_g overlap `g`; None when it failed as it should.
pub(super) fn vanilla_miss(e: f64, g: f64, mse_bar: f64, overlap_bar: f64) -> Option<String> {
    let (high_error, far) = (e >= mse_bar, g < overlap_bar);
    match (high_error, far) {
        (true, true) => None,
        (false, true) => Some(format!(
            "relative MSE {e:.3} < {mse_bar:.2} (w*_g overlap {g:.3} < {overlap_bar:.3})"
        )),
        (true, false) => Some(format!(
            "w*_g overlap {g:.3} >= {overlap_bar:.3}: a neuron found w*_g (relative MSE {e:.3} still >= {mse_bar:.2})"
        )),
        (false, false) => Some(format!(
            "relative MSE {e:.3} < {mse_bar:.2} and w*_g overlap {g:.3} >= {overlap_bar:.3}: it learned w*_g"
        )),
    }
}

/// Why a claim over seeds failed: how many seeds met it against how many
/// it needed, then each seed that missed with what it missed (`miss` of
/// the seed's index: empty when it met the claim). Three or more seeds that
/// missed alike (the same words around their numbers) are said once, each
/// number as the range over them: "seeds 1–10: relative MSE 0.211–0.244 <
/// 0.40".
fn seeds_missed(
    seeds: &[u64],
    met: usize,
    needed: usize,
    miss: impl Fn(usize) -> Vec<String>,
) -> String {
    let mut each: Vec<(u64, String)> = Vec::new();
    for (words, group_seeds, texts) in alike_misses(seeds, miss) {
        if group_seeds.len() < 3 {
            each.extend(
                group_seeds
                    .iter()
                    .zip(texts)
                    .map(|(s, t)| (*s, format!("seed {s}: {t}"))),
            );
            continue;
        }
        each.push((
            group_seeds[0],
            format!(
                "seeds {}: {}",
                seed_list(&group_seeds),
                as_ranges(&words, &texts)
            ),
        ));
    }
    each.sort_by_key(|e| e.0);
    format!(
        "{met} of {} seeds met it, {needed} needed; {}",
        seeds.len(),
        each.into_iter().map(|e| e.1).collect::<Vec<_>>().join("; ")
    )
}

/// The seeds that missed, grouped by the words around the numbers of what
/// they missed, in order of first appearance: (the words, the seeds, each
/// seed's text).
#[allow(clippy::type_complexity)]
fn alike_misses(
    seeds: &[u64],
    miss: impl Fn(usize) -> Vec<String>,
) -> Vec<(Vec<String>, Vec<u64>, Vec<String>)> {
    let mut groups: Vec<(Vec<String>, Vec<u64>, Vec<String>)> = Vec::new();
    for (i, &seed) in seeds.iter().enumerate() {
        let m = miss(i);
        if m.is_empty() {
            continue;
        }
        let text = m.join(", ");
        let words = split_numbers(&text).0;
        match groups.iter_mut().find(|g| g.0 == words) {
            Some(g) => {
                g.1.push(seed);
                g.2.push(text);
            }
            None => groups.push((words, vec![seed], vec![text])),
        }
    }
    groups
}

/// Texts of the same `words` as one: each number as the range over the
/// texts ("0.211–0.244"), or the one value when they agree.
fn as_ranges(words: &[String], texts: &[String]) -> String {
    let numbers: Vec<Vec<String>> = texts.iter().map(|t| split_numbers(t).1).collect();
    let mut joined = words[0].clone();
    for (k, word) in words.iter().enumerate().skip(1) {
        let column: Vec<&String> = numbers.iter().map(|n| &n[k - 1]).collect();
        let value = |s: &&String| s.parse::<f64>().unwrap_or(f64::NAN);
        let lo = column.iter().min_by(|a, b| value(a).total_cmp(&value(b)));
        let hi = column.iter().max_by(|a, b| value(a).total_cmp(&value(b)));
        match (lo, hi) {
            (Some(lo), Some(hi)) if lo != hi => joined.push_str(&format!("{lo}–{hi}")),
            (Some(lo), _) => joined.push_str(lo),
            _ => {}
        }
        joined.push_str(word);
    }
    joined
}

/// A text's words between its numbers, and its numbers: "MSE 0.21 < 0.40"
/// as (["MSE ", " < ", ""], ["0.21", "0.40"]).
fn split_numbers(text: &str) -> (Vec<String>, Vec<String>) {
    let (mut words, mut numbers) = (vec![String::new()], Vec::new());
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let starts_number = chars[i].is_ascii_digit()
            || (chars[i] == '-' && chars.get(i + 1).is_some_and(char::is_ascii_digit));
        // A digit inside a word (w*_1) is part of the word.
        let in_word = i > 0 && (chars[i - 1].is_alphabetic() || chars[i - 1] == '_');
        if starts_number && !in_word {
            let start = i;
            i += 1;
            while i < chars.len()
                && (chars[i].is_ascii_digit()
                    || (chars[i] == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)))
            {
                i += 1;
            }
            numbers.push(chars[start..i].iter().collect());
            words.push(String::new());
        } else {
            words.last_mut().expect("one word at least").push(chars[i]);
            i += 1;
        }
    }
    (words, numbers)
}

/// Seeds as short text: runs of three or more as "1–10": "1–3, 7, 9".
fn seed_list(seeds: &[u64]) -> String {
    let mut sorted = seeds.to_vec();
    sorted.sort_unstable();
    let mut parts: Vec<String> = Vec::new();
    let mut k = 0;
    while k < sorted.len() {
        let mut end = k;
        while end + 1 < sorted.len() && sorted[end + 1] == sorted[end] + 1 {
            end += 1;
        }
        if end >= k + 2 {
            parts.push(format!("{}–{}", sorted[k], sorted[end]));
        } else {
            parts.extend(sorted[k..=end].iter().map(u64::to_string));
        }
        k = end + 1;
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_claim_says_which_seeds_missed_what() {
        let seeds: Vec<u64> = (1..=6).collect();
        let e = [0.21, 0.5, 0.244, 0.23, 0.6, 0.22];
        let why = seeds_missed(&seeds, 2, 6, |i| {
            let ok = e[i] >= 0.40;
            (!ok)
                .then(|| {
                    format!(
                        "relative MSE {:.3} < 0.40 (w*_g overlap 0.9{i}): it learned",
                        e[i]
                    )
                })
                .into_iter()
                .collect()
        });
        assert_eq!(
            why,
            "2 of 6 seeds met it, 6 needed; seeds 1, 3, 4, 6: relative MSE 0.210–0.244 < 0.40 \
             (w*_g overlap 0.90–0.95): it learned"
        );
        let why = seeds_missed(&seeds[..3], 2, 3, |i| {
            (i == 1)
                .then(|| "w*_1 overlap 0.42 < 0.9".to_string())
                .into_iter()
                .collect()
        });
        assert_eq!(
            why,
            "2 of 3 seeds met it, 3 needed; seed 2: w*_1 overlap 0.42 < 0.9"
        );
        assert_eq!(seed_list(&[9, 1, 2, 3, 7]), "1–3, 7, 9");
        assert_eq!(seed_list(&[4, 5]), "4, 5");
    }

    #[test]
    fn a_tally_holds_with_its_quorum_of_seeds() {
        let seeds: Vec<u64> = (1..=10).collect();
        let miss = |i: usize| {
            (i == 3)
                .then(|| "purity 0.8000 < 0.9".to_string())
                .into_iter()
                .collect()
        };
        let ninety = Tally::new(&seeds, Quorum::Ninety, miss);
        assert_eq!((ninety.held, ninety.needed), (9, 9));
        let claim = ninety.claim("A", "a", serde_json::json!({}));
        assert!(claim.held && claim.why.is_none());
        let every = Tally::new(&seeds, Quorum::Every, miss);
        let claim = every.claim("B", "b", serde_json::json!({}));
        assert!(!claim.held);
        assert_eq!(
            claim.why.as_deref(),
            Some("9 of 10 seeds met it, 10 needed; seed 4: purity 0.8000 < 0.9")
        );
    }
}
