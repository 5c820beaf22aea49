//! T3: the median perturbation of the suite's minimum-norm attacks and its ratio to standard
//! training, per protocol (the rows are [`super::claims::ratios`]).

use std::fmt::Write as _;

use super::base::{Ctx, PAPER_RATIO, Results, protocols};
use super::claims;

pub(super) fn table(res: &Results, ctx: &Ctx) -> String {
    let mut s = String::from(
        "## T3: median perturbation of minimum-norm attacks and ratio to standard training\n\n",
    );
    let _ = writeln!(
        s,
        "The paper claims DeepFool and EAD need {PAPER_RATIO} the perturbation of standard \
         training. Read the ratios next to the clean accuracy: a collapsed model also needs \
         large perturbations (masking check 9, docs/method.md §7). Each minimum-norm attack \
         runs once per model; the median is over the points it fooled.\n"
    );
    let mut any = false;
    for p in protocols(res) {
        if let Some(t) = claims::ratios(res, ctx, &p) {
            let _ = writeln!(s, "### Protocol: {p}\n");
            s.push_str(&t);
            s.push('\n');
            any = true;
        }
    }
    if !any {
        s.push_str(&claims::no_ratio_reason());
    }
    s
}
