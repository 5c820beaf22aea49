//! `[slurm]` of an experiment file: the resources of the array tasks of `gfa plan --emit
//! slurm` (`cli::slurm` writes the script). Each key has its `--slurm-*` flag, which wins.
use serde::Deserialize;

/// `[slurm]` of an experiment file: the resources of each array task. Not part of any run (it
/// changes no run id).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SlurmSection {
    /// `--partition`.
    pub partition: Option<String>,
    /// `--account`.
    pub account: Option<String>,
    /// `--time` per task, as sbatch takes it: `MM`, `HH:MM:SS`, `D-HH:MM` … (default: the
    /// calibrated estimate of the task's runs with a margin, `cli::slurm`).
    pub time: Option<String>,
    /// `--cpus-per-task` (default 1): gfa's libtorch threads.
    pub cpus_per_task: Option<usize>,
    /// `--mem`, e.g. "8G".
    pub mem: Option<String>,
    /// GPUs per task: `--gres=gpu:N`, and `gfa run --devices` from `CUDA_VISIBLE_DEVICES`.
    pub gpus: Option<usize>,
    /// More `#SBATCH` lines, each an sbatch option, e.g. "--qos=long".
    pub extra: Vec<String>,
}

impl SlurmSection {
    /// `other`'s settings where it has them, else this one's (`extra` lines add up).
    pub fn merged(&self, other: &SlurmSection) -> SlurmSection {
        SlurmSection {
            partition: other.partition.clone().or_else(|| self.partition.clone()),
            account: other.account.clone().or_else(|| self.account.clone()),
            time: other.time.clone().or_else(|| self.time.clone()),
            cpus_per_task: other.cpus_per_task.or(self.cpus_per_task),
            mem: other.mem.clone().or_else(|| self.mem.clone()),
            gpus: other.gpus.or(self.gpus),
            extra: self.extra.iter().chain(&other.extra).cloned().collect(),
        }
    }

    /// The first bad value: its key and what is wrong.
    pub fn check(&self) -> std::result::Result<(), (&'static str, String)> {
        let word = |key: &'static str, v: &Option<String>| match v {
            Some(s) if s.is_empty() || s.chars().any(|c| c.is_whitespace() || c == '\'') => {
                Err((key, format!("expected one word (no spaces or quotes), got {s:?}")))
            }
            _ => Ok(()),
        };
        word("partition", &self.partition)?;
        word("account", &self.account)?;
        if let Some(t) = &self.time {
            time_seconds(t).map_err(|m| ("time", m))?;
        }
        if self.cpus_per_task == Some(0) {
            return Err(("cpus_per_task", "expected at least 1".into()));
        }
        if let Some(m) = &self.mem {
            let digits = m.trim_end_matches(['K', 'M', 'G', 'T']);
            if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) || m.len() > 16 {
                return Err((
                    "mem",
                    format!("expected a size as sbatch --mem takes it, e.g. \"8G\", got {m:?}"),
                ));
            }
        }
        if self.gpus == Some(0) {
            return Err(("gpus", "expected at least 1 (leave it out for no GPU)".into()));
        }
        for e in &self.extra {
            if !e.starts_with('-') || e.contains('\n') {
                return Err((
                    "extra",
                    format!("expected one sbatch option per entry, e.g. \"--qos=long\", got {e:?}"),
                ));
            }
        }
        Ok(())
    }
}

/// Seconds of an sbatch `--time`: `M`, `M:S`, `H:M:S`, `D-H`, `D-H:M`, `D-H:M:S`.
pub fn time_seconds(t: &str) -> std::result::Result<u64, String> {
    let bad = || {
        format!(
            "expected a time limit as sbatch --time takes it (minutes, HH:MM:SS or \
             D-HH:MM:SS, e.g. \"2:00:00\"), got {t:?}"
        )
    };
    let num = |s: &str| s.parse::<u64>().map_err(|_| bad());
    let (days, rest) = match t.split_once('-') {
        Some((d, r)) => (Some(num(d)?), r),
        None => (None, t),
    };
    let parts: Vec<u64> = rest.split(':').map(num).collect::<std::result::Result<_, _>>()?;
    let s = match (days, &parts[..]) {
        (None, &[m]) => m * 60,
        (None, &[m, s]) => m * 60 + s,
        (None, &[h, m, s]) => h * 3600 + m * 60 + s,
        (Some(d), &[h]) => d * 86400 + h * 3600,
        (Some(d), &[h, m]) => d * 86400 + h * 3600 + m * 60,
        (Some(d), &[h, m, s]) => d * 86400 + h * 3600 + m * 60 + s,
        _ => return Err(bad()),
    };
    if s == 0 {
        return Err(bad());
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_as_sbatch_reads_them() {
        assert_eq!(time_seconds("30"), Ok(1800));
        assert_eq!(time_seconds("2:00:00"), Ok(7200));
        assert_eq!(time_seconds("1-12"), Ok(86400 + 12 * 3600));
        assert_eq!(time_seconds("1-0:30"), Ok(86400 + 1800));
        for bad in ["", "0", "1h", "1:2:3:4", "-5", "a-1"] {
            assert!(time_seconds(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bad_values_name_their_key() {
        let bad = |s: SlurmSection| s.check().unwrap_err().0;
        assert_eq!(
            bad(SlurmSection { partition: Some("a b".into()), ..Default::default() }),
            "partition"
        );
        assert_eq!(bad(SlurmSection { time: Some("soon".into()), ..Default::default() }), "time");
        assert_eq!(bad(SlurmSection { mem: Some("lots".into()), ..Default::default() }), "mem");
        assert_eq!(bad(SlurmSection { gpus: Some(0), ..Default::default() }), "gpus");
        assert_eq!(bad(SlurmSection { extra: vec!["qos".into()], ..Default::default() }), "extra");
        let file = SlurmSection {
            partition: Some("a".into()),
            extra: vec!["--x".into()],
            ..Default::default()
        };
        let flags = SlurmSection {
            partition: Some("b".into()),
            extra: vec!["--y".into()],
            ..Default::default()
        };
        let m = file.merged(&flags);
        assert_eq!((m.partition.as_deref(), m.extra.len()), (Some("b"), 2));
    }
}
