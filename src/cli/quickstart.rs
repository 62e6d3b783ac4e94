//! `sluicegate quickstart DIR`: a demo project (a SQLite "warehouse" with a realistic
//! `pub_hubspot_contacts` table, a `sluicegate.yml`, an Airflow DAG), then a demo against the
//! webhook emulator: the first run sends every row, the second none, and after 1 % of the rows
//! change, the third sends exactly those.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;

use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{QueryBuilder, Sqlite};

use super::{other, print_run, run_sync};
use crate::config::SyncRef;
use crate::emulator::webhook::{WebhookEmulator, WebhookEmulatorConfig};
use crate::engine::{Engine, EngineOptions};
use crate::error::{Context, ErrorKind, Result};
use crate::store::{RunRecord, RunStatus, TriggerReason};

pub const TABLE: &str = "pub_hubspot_contacts";
const PROJECT_FILE: &str = "sluicegate.yml";

const PROJECT_YML: &str = r#"# A sluicegate project, written by `sluicegate quickstart`.
# Reference: every key of this file is described in the sluicegate docs.
version: 1

sources:
  warehouse:
    # SQLite file, relative to this file. For Postgres: postgres://user:${PGPASSWORD}@host:5432/db
    url: sqlite://warehouse.db

destinations:
  crm:
    type: webhook
    # Start the emulator with `sluicegate emulate webhook`, or point this at your own endpoint.
    url: ${SLUICEGATE_WEBHOOK_URL:-http://127.0.0.1:8787/contacts}
    batch_size: 100
    headers:
      # Secrets come from the environment, never from this file.
      X-Api-Key: ${SLUICEGATE_WEBHOOK_TOKEN:-demo-token}
    retry:
      max_attempts: 5
      initial_backoff: 500ms

syncs:
  - id: 1
    name: hubspot_contacts
    source:
      connection: warehouse
      table: pub_hubspot_contacts
    destination:
      connection: crm
      object: contacts
    primary_identifier:
      from: email
      to: email
    mappings:
      - { from: first_name, to: firstname }
      - { from: last_name, to: lastname }
      - { from: company, to: company }
      - { from: job_title, to: jobtitle }
      - { from: lifecycle_stage, to: lifecyclestage }
      - { from: lead_score, to: hubspotscore }
      - { from: country, to: country }
      - { from: phone, to: phone }
      - { from: is_customer, to: is_customer }
      - { from: annual_revenue, to: annualrevenue }
      - { from: updated_at, to: source_updated_at }
    behavior: upsert
"#;

/// The DAG the quickstart writes; `__SLUICEGATE_DIR__` becomes the project directory.
const DAG_TEMPLATE: &str = include_str!("../../python/sluicegate/_quickstart_dag.py.txt");

const FIRST: &[&str] = &[
    "Olivia", "Liam", "Emma", "Noah", "Ava", "Elijah", "Sophia", "James", "Isabella", "Lucas", "Mia", "Mateo", "Amelia",
    "Benjamin", "Harper", "Theo", "Evelyn", "Henry", "Aisha", "Wei", "Priya", "Kenji", "Fatima", "Diego", "Ingrid",
    "Tomasz", "Chloé", "Oluwaseun", "Sven", "Leila", "Marta", "Raj", "Hana", "Jonas", "Nadia",
];
const LAST: &[&str] = &[
    "Smith", "Johnson", "Williams", "Brown", "Garcia", "Miller", "Davis", "Rodriguez", "Martinez", "Hernandez", "Lopez",
    "Wilson", "Anderson", "Thomas", "Taylor", "Moore", "Jackson", "Martin", "Lee", "Nguyen", "Okafor", "Schmidt",
    "Kowalski", "Yamamoto", "Patel", "Rossi", "Dubois", "Larsen", "Haddad", "O'Brien", "Müller", "Silva",
];
const COMPANIES: &[(&str, &str)] = &[
    ("Acme Analytics", "acme-analytics.com"), ("Northwind Traders", "northwind.io"), ("Globex", "globex.com"),
    ("Initech", "initech.net"), ("Umbrella Health", "umbrellahealth.org"), ("Stark Logistics", "starklogistics.com"),
    ("Wayne Retail", "wayneretail.co"), ("Hooli", "hooli.xyz"), ("Pied Piper", "piedpiper.com"),
    ("Vandelay Industries", "vandelay.com"), ("Soylent Foods", "soylent.io"), ("Tyrell Biotech", "tyrell.bio"),
    ("Cyberdyne Systems", "cyberdyne.ai"), ("Aperture Labs", "aperture.dev"), ("Massive Dynamic", "massivedynamic.com"),
    ("Oscorp", "oscorp.co"), ("Wonka Confections", "wonka.candy"), ("Gringotts Finance", "gringotts.bank"),
];
const TITLES: &[&str] = &[
    "Data Engineer", "Analytics Engineer", "Head of Data", "VP Marketing", "Growth Manager", "Product Manager",
    "CTO", "Account Executive", "Customer Success Manager", "Marketing Ops Lead", "Data Analyst", "CEO",
];
const STAGES: &[&str] = &["subscriber", "lead", "marketingqualifiedlead", "salesqualifiedlead", "opportunity", "customer"];
const COUNTRIES: &[(&str, &str)] = &[
    ("United States", "+1"), ("United Kingdom", "+44"), ("Germany", "+49"), ("France", "+33"), ("Brazil", "+55"),
    ("India", "+91"), ("Japan", "+81"), ("Nigeria", "+234"), ("Canada", "+1"), ("Australia", "+61"), ("Poland", "+48"),
];

/// SplitMix64: deterministic demo data without a dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() % items.len() as u64) as usize]
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct Contact {
    id: i64,
    email: String,
    first: String,
    last: String,
    company: String,
    title: String,
    stage: String,
    score: i64,
    country: String,
    phone: Option<String>,
    customer: bool,
    revenue: f64,
    updated_at: String,
}

fn contact(rng: &mut Rng, id: i64) -> Contact {
    let first = *rng.pick(FIRST);
    let last = *rng.pick(LAST);
    let (company, domain) = *rng.pick(COMPANIES);
    let (country, prefix) = *rng.pick(COUNTRIES);
    let stage = *rng.pick(STAGES);
    let local: String = format!("{}.{}", first, last)
        .to_lowercase()
        .chars()
        .map(|c| match c {
            'é' => 'e',
            'ü' => 'u',
            c if c.is_ascii_alphanumeric() || c == '.' => c,
            _ => '-',
        })
        .collect();
    let phone = (rng.below(10) > 1).then(|| format!("{prefix} {} {:04} {:04}", 200 + rng.below(700), rng.below(10_000), rng.below(10_000)));
    let day = 1 + rng.below(28);
    let month = 1 + rng.below(10);
    Contact {
        id,
        email: format!("{local}.{id}@{domain}"),
        first: first.to_string(),
        last: last.to_string(),
        company: company.to_string(),
        title: rng.pick(TITLES).to_string(),
        stage: stage.to_string(),
        score: rng.below(101) as i64,
        country: country.to_string(),
        phone,
        customer: stage == "customer",
        revenue: rng.below(50_000) as f64 * 100.0,
        updated_at: format!("2026-{month:02}-{day:02}T{:02}:{:02}:00Z", rng.below(24), rng.below(60)),
    }
}

/// Write the demo warehouse: `rows` contacts in `pub_hubspot_contacts`.
pub async fn write_warehouse(path: &Path, rows: u32) -> Result<()> {
    let opts = SqliteConnectOptions::new().filename(path).create_if_missing(true);
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(opts)
        .await
        .context(ErrorKind::Other, || format!("cannot create {}", path.display()))?;
    let err = || format!("cannot write the demo table into {}", path.display());
    sqlx::raw_sql(
        "DROP TABLE IF EXISTS pub_hubspot_contacts;
         CREATE TABLE pub_hubspot_contacts (
            contact_id      INTEGER PRIMARY KEY,
            email           TEXT NOT NULL,
            first_name      TEXT,
            last_name       TEXT,
            company         TEXT,
            job_title       TEXT,
            lifecycle_stage TEXT,
            lead_score      INTEGER,
            country         TEXT,
            phone           TEXT,
            is_customer     BOOLEAN,
            annual_revenue  REAL,
            updated_at      TEXT
         );",
    )
    .execute(&pool)
    .await
    .context(ErrorKind::Other, err)?;
    let mut rng = Rng(20_261_121);
    let contacts: Vec<Contact> = (1..=i64::from(rows)).map(|id| contact(&mut rng, id)).collect();
    let mut tx = pool.begin().await.context(ErrorKind::Other, err)?;
    for chunk in contacts.chunks(1000) {
        let mut qb = QueryBuilder::<Sqlite>::new(
            "INSERT INTO pub_hubspot_contacts (contact_id, email, first_name, last_name, company, job_title, lifecycle_stage, lead_score, country, phone, is_customer, annual_revenue, updated_at) ",
        );
        qb.push_values(chunk, |mut b, c| {
            b.push_bind(c.id)
                .push_bind(c.email.clone())
                .push_bind(c.first.clone())
                .push_bind(c.last.clone())
                .push_bind(c.company.clone())
                .push_bind(c.title.clone())
                .push_bind(c.stage.clone())
                .push_bind(c.score)
                .push_bind(c.country.clone())
                .push_bind(c.phone.clone())
                .push_bind(c.customer)
                .push_bind(c.revenue)
                .push_bind(c.updated_at.clone());
        });
        qb.build().execute(&mut *tx).await.context(ErrorKind::Other, err)?;
    }
    tx.commit().await.context(ErrorKind::Other, err)?;
    pool.close().await;
    Ok(())
}

/// Change 1 % of the rows (every 100th contact): a new lead score and `updated_at`.
pub async fn change_one_percent(path: &Path) -> Result<u64> {
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(SqliteConnectOptions::new().filename(path))
        .await
        .context(ErrorKind::Other, || format!("cannot open {}", path.display()))?;
    let done = sqlx::query(
        "UPDATE pub_hubspot_contacts SET lead_score = (lead_score + 7) % 101, updated_at = '2026-11-21T09:00:00Z' WHERE contact_id % 100 = 0",
    )
    .execute(&pool)
    .await
    .context(ErrorKind::Other, || format!("cannot update {}", path.display()))?;
    pool.close().await;
    Ok(done.rows_affected())
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).context(ErrorKind::Other, || format!("cannot write {}", path.display()))
}

pub async fn run(dir: &Path, demo: bool, force: bool, rows: u32) -> Result<i32> {
    std::fs::create_dir_all(dir.join("dags")).context(ErrorKind::Other, || format!("cannot create {}", dir.display()))?;
    let project = dir.join(PROJECT_FILE);
    if project.exists() && !force {
        return Err(other(format!(
            "{} already exists; choose an empty directory, or pass --force to overwrite the demo project and its state",
            project.display()
        )));
    }
    for stale in ["warehouse.db", "sluicegate_state.db", "sluicegate_state.db-wal", "sluicegate_state.db-shm"] {
        let p = dir.join(stale);
        if p.exists() {
            std::fs::remove_file(&p).context(ErrorKind::Other, || format!("cannot remove {}", p.display()))?;
        }
    }
    let warehouse = dir.join("warehouse.db");
    write_warehouse(&warehouse, rows).await?;
    write(&project, PROJECT_YML)?;
    let abs_dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let dag = DAG_TEMPLATE.replace("__SLUICEGATE_DIR__", &abs_dir.display().to_string());
    write(&dir.join("dags").join("sluicegate_quickstart.py"), &dag)?;
    println!("Wrote a demo project to {}:", dir.display());
    println!("  warehouse.db                  SQLite warehouse, table {TABLE} ({rows} rows)");
    println!("  sluicegate.yml                one sync: {TABLE} -> webhook `crm` (HubSpot-style contacts)");
    println!("  dags/sluicegate_quickstart.py an Airflow DAG: SyncOperator -> SyncSensor");
    if !demo {
        return Ok(0);
    }

    let emu = WebhookEmulator::start(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0), WebhookEmulatorConfig::default()).await?;
    println!("\nStarted the webhook emulator at {}", emu.url);
    let mut opts = EngineOptions::default();
    opts.env.insert("SLUICEGATE_WEBHOOK_URL".into(), format!("{}/contacts", emu.url));
    let engine = Engine::open(&project, opts).await?;
    let sync = SyncRef::Id(1);
    let reason = || TriggerReason { ui_tag: "Manual".into(), ui_detail: "sluicegate quickstart demo".into() };

    let mut problems = Vec::new();
    let mut check = |label: &str, run: &RunRecord, want_sent: i64, received_total: u64, want_total: u64| {
        println!("\n{label}");
        print_run(run);
        println!("  the emulator has accepted {received_total} records in all");
        if run.status != RunStatus::Completed || run.counts.records_processed != Some(want_sent) || received_total != want_total {
            problems.push(format!("{label}: expected {want_sent} rows sent and {want_total} received"));
        }
    };

    let r1 = run_sync(&engine, &sync, false, reason()).await?;
    check("Run 1: the first sync sends every row", &r1, i64::from(rows), emu.stats().records_accepted, u64::from(rows));
    let r2 = run_sync(&engine, &sync, false, reason()).await?;
    check("Run 2: nothing changed, nothing is sent", &r2, 0, emu.stats().records_accepted, u64::from(rows));
    let changed = change_one_percent(&warehouse).await?;
    println!("\nChanged {changed} rows (1 %) of {TABLE}: new lead_score and updated_at");
    let r3 = run_sync(&engine, &sync, false, reason()).await?;
    check(
        "Run 3: exactly the changed rows are sent",
        &r3,
        changed as i64,
        emu.stats().records_accepted,
        u64::from(rows) + changed,
    );
    emu.stop().await;
    if !problems.is_empty() {
        return Err(other(format!("the demo did not behave as expected: {}", problems.join("; "))));
    }
    println!("\nDemo complete: {rows} rows, then 0, then {changed}. Next:");
    println!("  sluicegate --project {} runs", project.display());
    println!("  sluicegate emulate webhook            # in another terminal, then:");
    println!("  sluicegate --project {} run hubspot_contacts", project.display());
    Ok(0)
}
