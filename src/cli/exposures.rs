//! `sluicegate dbt exposures`: a dbt exposures file that groups the dbt models the project's
//! syncs read by destination, so that data teams can see, select and test everything feeding
//! one tool in a step (`dbt build --select +exposure:sluicegate_hubspot`).
//!
//! One exposure per destination that at least one `dbt_model:` sync delivers to, named
//! `sluicegate_<destination>` (lowercased, other characters as `_`), of type `application`,
//! with `depends_on: ref('<model>')` for each model and the syncs in `meta.sluicegate`. Syncs
//! that read a `table:` or a `query:` are not dbt lineage and are left out (listed on stderr).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::config::{Project, Relation};

/// What the exposures say about their owner and maturity.
pub struct Options {
    pub owner_name: String,
    pub owner_email: Option<String>,
    pub maturity: String,
}

/// A YAML double-quoted scalar (JSON string syntax is valid YAML).
fn q(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// `sluicegate_` and the destination name as a dbt node name: lowercase letters, digits, `_`.
pub fn exposure_name(destination: &str) -> String {
    let mut out = String::from("sluicegate_");
    for c in destination.chars() {
        out.push(if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' });
    }
    out
}

/// The exposures YAML, and the syncs left out (not reading a dbt model).
pub fn render(project: &Project, opts: &Options) -> (String, Vec<String>) {
    let mut by_dest: BTreeMap<&str, Vec<(&crate::config::SyncConfig, &str)>> = BTreeMap::new();
    let mut skipped = Vec::new();
    for s in &project.syncs {
        match &s.relation {
            Relation::DbtModel(model) => by_dest.entry(s.destination.as_str()).or_default().push((s, model)),
            _ => skipped.push(format!("sync {} ({}) reads a table or query, not a dbt_model", s.id, s.name)),
        }
    }
    let mut y = String::new();
    let _ = writeln!(y, "# Written by `sluicegate dbt exposures` from {}; regenerate it, do not edit.", project.display_path);
    let _ = writeln!(y, "version: 2\n\nexposures:");
    if by_dest.is_empty() {
        y = format!("# Written by `sluicegate dbt exposures` from {}: no sync reads a dbt_model.\nversion: 2\n\nexposures: []\n", project.display_path);
        return (y, skipped);
    }
    for (dest, syncs) in by_dest {
        let cfg = &project.destinations[dest];
        let mut models: Vec<&str> = syncs.iter().map(|(_, m)| *m).collect();
        models.sort_unstable();
        models.dedup();
        let names: Vec<String> = syncs.iter().map(|(s, _)| format!("{} ({})", s.name, s.behavior.as_str())).collect();
        let _ = writeln!(y, "  - name: {}", exposure_name(dest));
        let _ = writeln!(y, "    label: {}", q(&format!("sluicegate → {dest}")));
        let _ = writeln!(y, "    type: application");
        let _ = writeln!(y, "    maturity: {}", opts.maturity);
        let _ = writeln!(
            y,
            "    description: {}",
            q(&format!("Delivered by sluicegate to the {} destination `{dest}` by the syncs {}.", cfg.type_name(), names.join(", ")))
        );
        let _ = writeln!(y, "    depends_on:");
        for m in &models {
            let _ = writeln!(y, "      - ref({})", q(m).replace('"', "'"));
        }
        let _ = writeln!(y, "    owner:");
        let _ = writeln!(y, "      name: {}", q(&opts.owner_name));
        if let Some(e) = &opts.owner_email {
            let _ = writeln!(y, "      email: {}", q(e));
        }
        let _ = writeln!(y, "    meta:");
        let _ = writeln!(y, "      sluicegate:");
        let _ = writeln!(y, "        destination: {}", q(dest));
        let _ = writeln!(y, "        destination_type: {}", cfg.type_name());
        let _ = writeln!(y, "        syncs:");
        for (s, m) in &syncs {
            let _ = writeln!(
                y,
                "          - {{id: {}, name: {}, model: {}, object: {}, behavior: {}}}",
                s.id,
                q(&s.name),
                q(m),
                s.object.as_deref().map(q).unwrap_or_else(|| "null".into()),
                s.behavior.as_str()
            );
        }
    }
    (y, skipped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_models_by_destination() {
        let yml = "sources: {w: {url: 'sqlite://w.db'}}\ndestinations:\n  HubSpot-Prod: {type: webhook, url: 'http://h/x'}\n  other: {type: webhook, url: 'http://h/y'}\nsyncs:\n  - {id: 1, name: a, source: {connection: w, dbt_model: pub_contacts}, destination: {connection: HubSpot-Prod, object: contacts}, primary_identifier: {from: id, to: id}}\n  - {id: 2, name: b, source: {connection: w, dbt_model: pub_companies}, destination: {connection: HubSpot-Prod}, primary_identifier: {from: id, to: id}, behavior: mirror}\n  - {id: 3, name: c, source: {connection: w, dbt_model: pub_contacts}, destination: {connection: HubSpot-Prod}, primary_identifier: {from: id, to: id}}\n  - {id: 4, name: d, source: {connection: w, table: raw}, destination: {connection: other}, primary_identifier: {from: id, to: id}}\n";
        let p = Project::from_str_with_env(yml, std::path::Path::new("p.yml"), &|_| None).unwrap();
        let (y, skipped) = render(&p, &Options { owner_name: "Data \"team\"".into(), owner_email: Some("d@x.io".into()), maturity: "high".into() });
        assert_eq!(y.matches("  - name: ").count(), 1, "{y}");
        assert!(y.contains("  - name: sluicegate_hubspot_prod\n"), "{y}");
        assert!(y.contains("      - ref('pub_companies')\n      - ref('pub_contacts')\n    owner:"), "models once each, sorted: {y}");
        assert!(y.contains("name: \"Data \\\"team\\\"\""), "{y}");
        assert!(y.contains("{id: 2, name: \"b\", model: \"pub_companies\", object: null, behavior: mirror}"), "{y}");
        assert_eq!(skipped.len(), 1);
        assert!(skipped[0].contains("sync 4 (d)"));
    }
}
