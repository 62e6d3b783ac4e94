//! Load client for `bench/serve_load.sh`: many API clients polling runs of a `sluicegate serve`
//! while its workers run syncs.
//!
//!   serve_load URL TOKEN CLIENTS SECONDS ROWS SYNC_ID...
//!
//! - Each listed sync is triggered over the API (`force_full_sync`, so every run sends all ROWS
//!   rows) again and again, as soon as its last run ended, for SECONDS.
//! - CLIENTS clients poll at the same time, each in a loop without pause: `GET
//!   /api/v1/sync_runs/{latest run}` and `GET /api/v1/syncs/{id}/sync_runs`, alternately.
//! - Prints requests, requests/s, latency p50/p90/p99/max and non-200 answers, and each run's
//!   outcome. Exits 1 when any poll failed or any run did not complete with ROWS rows updated
//!   and none failed ("no run affected").

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn get(client: &reqwest::Client, url: &str, token: &str) -> Result<(u16, Value), String> {
    let resp = client.get(url).bearer_auth(token).send().await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.map_err(|e| e.to_string())?;
    let body = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    Ok((status, body))
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 6 {
        eprintln!("usage: serve_load URL TOKEN CLIENTS SECONDS ROWS SYNC_ID...");
        std::process::exit(2);
    }
    let base = args[0].trim_end_matches('/').to_string();
    let token = args[1].clone();
    let clients: usize = args[2].parse().expect("CLIENTS");
    let seconds: u64 = args[3].parse().expect("SECONDS");
    let rows: i64 = args[4].parse().expect("ROWS");
    let syncs: Vec<i64> = args[5..].iter().map(|s| s.parse().expect("SYNC_ID")).collect();
    let client = sluicegate::engine::http_client().expect("an HTTP client");
    let stop = Arc::new(AtomicBool::new(false));
    let latest: Arc<Vec<AtomicI64>> = Arc::new(syncs.iter().map(|_| AtomicI64::new(0)).collect());

    // Triggers: one loop per sync, a new full run as soon as the last ended.
    let mut triggers = Vec::new();
    for (i, sync) in syncs.iter().copied().enumerate() {
        let (client, base, token, stop, latest) = (client.clone(), base.clone(), token.clone(), stop.clone(), latest.clone());
        triggers.push(tokio::spawn(async move {
            let mut runs: Vec<Value> = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let resp = client
                    .post(format!("{base}/api/v1/syncs/{sync}/trigger"))
                    .bearer_auth(&token)
                    .header("content-type", "application/json")
                    .body(r#"{"force_full_sync": true}"#)
                    .send()
                    .await
                    .expect("trigger");
                let body: Value = serde_json::from_slice(&resp.bytes().await.expect("trigger answer")).expect("trigger answer JSON");
                let id = body["data"]["sync_run_id"].as_i64().unwrap_or_else(|| panic!("trigger of sync {sync}: {body}"));
                latest[i].store(id, Ordering::Relaxed);
                loop {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    let (_, run) = get(&client, &format!("{base}/api/v1/sync_runs/{id}"), &token).await.expect("run");
                    let status = run["data"]["status"].as_str().unwrap_or("").to_string();
                    if status == "completed" || status == "failed" {
                        runs.push(run["data"].clone());
                        break;
                    }
                }
            }
            runs
        }));
    }
    while latest.iter().any(|l| l.load(Ordering::Relaxed) == 0) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Pollers.
    let lat: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let errors: Arc<Mutex<Vec<String>>> = Arc::default();
    let started = Instant::now();
    let mut pollers = Vec::new();
    for c in 0..clients {
        let (client, base, token, stop, latest, lat, errors, syncs) =
            (client.clone(), base.clone(), token.clone(), stop.clone(), latest.clone(), lat.clone(), errors.clone(), syncs.clone());
        pollers.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            let mut n = c;
            while !stop.load(Ordering::Relaxed) {
                let i = n % syncs.len();
                let url = if n % 2 == 0 {
                    format!("{base}/api/v1/sync_runs/{}", latest[i].load(Ordering::Relaxed))
                } else {
                    format!("{base}/api/v1/syncs/{}/sync_runs?per_page=5", syncs[i])
                };
                let t = Instant::now();
                match get(&client, &url, &token).await {
                    Ok((200, _)) => mine.push(t.elapsed()),
                    Ok((s, body)) => errors.lock().unwrap().push(format!("{url}: HTTP {s} {body}")),
                    Err(e) => errors.lock().unwrap().push(format!("{url}: {e}")),
                }
                n += 1;
            }
            lat.lock().unwrap().extend(mine);
        }));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for p in pollers {
        p.await.unwrap();
    }
    let elapsed = started.elapsed();
    let mut runs = Vec::new();
    for t in triggers {
        runs.extend(t.await.unwrap());
    }

    let mut lat = lat.lock().unwrap().clone();
    lat.sort();
    let errors = errors.lock().unwrap().clone();
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
    println!("clients: {clients}, {:.1} s", elapsed.as_secs_f64());
    println!("poll requests: {} ok, {} failed, {:.0} requests/s", lat.len(), errors.len(), lat.len() as f64 / elapsed.as_secs_f64());
    println!(
        "latency: p50 {}  p90 {}  p99 {}  max {}",
        ms(percentile(&lat, 0.50)),
        ms(percentile(&lat, 0.90)),
        ms(percentile(&lat, 0.99)),
        ms(lat.last().copied().unwrap_or_default())
    );
    let affected: Vec<&Value> = runs
        .iter()
        .filter(|r| r["status"] != "completed" || r["records_updated"].as_i64() != Some(rows) || r["records_failed"].as_i64() != Some(0))
        .collect();
    println!("runs during the load: {} ended, {} affected (not completed with {rows} rows updated and none failed)", runs.len(), affected.len());
    for r in affected.iter().take(5) {
        println!("  affected run: {r}");
    }
    for e in errors.iter().take(5) {
        println!("  failed poll: {e}");
    }
    if !errors.is_empty() || !affected.is_empty() || runs.is_empty() {
        std::process::exit(1);
    }
}
