//! The report: one flat JSON object of numbers (`report.json`) and the same figures as a Markdown
//! table with each goal and whether it was met (`report.md`). Goals are printed, never asserted.

use std::fmt::Write as _;
use std::path::Path;

/// A target a figure is judged against.
#[derive(Clone, Copy, Debug)]
pub enum Goal {
    AtMost(f64),
    AtLeast(f64),
}

impl Goal {
    fn met(self, value: f64) -> bool {
        match self {
            Goal::AtMost(limit) => value <= limit,
            Goal::AtLeast(floor) => value >= floor,
        }
    }
}

struct Figure {
    key: String,
    value: f64,
    integer: bool,
    unit: &'static str,
    what: String,
    goal: Option<(Goal, String)>,
}

#[derive(Default)]
pub struct Report {
    figures: Vec<Figure>,
    notes: Vec<String>,
}

impl Report {
    /// A measured quantity (rounded to two decimals in the report).
    pub fn value(&mut self, key: &str, value: f64, unit: &'static str, what: &str) {
        self.push(key, value, false, unit, what);
    }

    /// A count or a size in bytes.
    pub fn count(&mut self, key: &str, value: u64, unit: &'static str, what: &str) {
        self.push(key, value as f64, true, unit, what);
    }

    fn push(&mut self, key: &str, value: f64, integer: bool, unit: &'static str, what: &str) {
        self.figures.retain(|f| f.key != key);
        self.figures.push(Figure {
            key: key.to_string(),
            value,
            integer,
            unit,
            what: what.to_string(),
            goal: None,
        });
    }

    /// Attach a goal (described as `text`) to the figure last added under `key`.
    pub fn goal(&mut self, key: &str, goal: Goal, text: &str) {
        if let Some(f) = self.figures.iter_mut().find(|f| f.key == key) {
            f.goal = Some((goal, text.to_string()));
        }
    }

    pub fn get(&self, key: &str) -> Option<f64> {
        self.figures.iter().find(|f| f.key == key).map(|f| f.value)
    }

    /// A paragraph for the Markdown report's notes.
    pub fn note(&mut self, text: String) {
        self.notes.push(text);
    }

    fn shown(f: &Figure) -> String {
        if f.integer {
            format!("{}", f.value as u64)
        } else {
            format!("{:.2}", f.value)
        }
    }

    pub fn json(&self) -> String {
        let mut out = String::from("{\n");
        for (i, f) in self.figures.iter().enumerate() {
            let comma = if i + 1 == self.figures.len() { "" } else { "," };
            let key = serde_json::Value::String(f.key.clone());
            let _ = writeln!(out, "  {key}: {}{comma}", Self::shown(f));
        }
        out.push_str("}\n");
        out
    }

    pub fn markdown(&self) -> String {
        let mut out = String::new();
        out.push_str("| figure | value | unit | goal | result | what |\n");
        out.push_str("|---|---:|---|---|---|---|\n");
        for f in &self.figures {
            let (goal, result) = match &f.goal {
                Some((goal, text)) => (
                    text.clone(),
                    if goal.met(f.value) { "pass" } else { "MISS" },
                ),
                None => (String::new(), ""),
            };
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {} | {} | {} |",
                f.key,
                Self::shown(f),
                f.unit,
                goal,
                result,
                f.what
            );
        }
        if !self.notes.is_empty() {
            out.push_str("\n## Notes\n\n");
            for note in &self.notes {
                out.push_str(note);
                out.push_str("\n\n");
            }
        }
        out
    }

    /// Figures whose goal was missed, as `key (value, goal)`.
    pub fn misses(&self) -> Vec<String> {
        self.figures
            .iter()
            .filter_map(|f| {
                let (goal, text) = f.goal.as_ref()?;
                (!goal.met(f.value)).then(|| format!("{} = {} ({})", f.key, Self::shown(f), text))
            })
            .collect()
    }

    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("report.json"), self.json())?;
        let mut md = String::from("# Benchmark report\n\n");
        md.push_str(&self.markdown());
        std::fs::write(dir.join("report.md"), md)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_one_flat_object_of_numbers() {
        let mut r = Report::default();
        r.value("a_ms", 1.23456, "ms", "a");
        r.count("b", 7, "", "b");
        r.goal("a_ms", Goal::AtMost(1.0), "≤ 1");
        let parsed: serde_json::Value = serde_json::from_str(&r.json()).expect("valid JSON");
        let object = parsed.as_object().expect("an object");
        assert_eq!(object.len(), 2);
        assert!(object.values().all(serde_json::Value::is_number));
        assert_eq!(object["a_ms"].as_f64(), Some(1.23));
        assert_eq!(object["b"].as_u64(), Some(7));
        assert_eq!(r.misses().len(), 1);
        assert!(r.markdown().contains("| `a_ms` | 1.23 | ms | ≤ 1 | MISS |"));
    }
}
