//! An actix-web service that uses a keystore and serves its Prometheus
//! metrics on its own `/metrics` route, instead of the exporter's listener.
//!
//! `cargo run --example actix_web_metrics`, then
//! `curl 127.0.0.1:8080/user/ada` and `curl 127.0.0.1:8080/metrics`.
//! With `OBJDATAKEY_EXAMPLE_ONESHOT=1` (as CI runs it) it binds a free
//! loopback port, requests both routes once, prints the answers and exits.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use actix_web::{App, HttpResponse, HttpServer, get, web};
use objdatakey::{BackendKind, Keystore, Overrides, Ttl};

/// The exposition of every keystore in the process (they share one registry).
#[get("/metrics")]
async fn metrics_route(keystore: web::Data<Keystore>) -> HttpResponse {
    // The metrics actor applies events every 100 ms; flushing first makes a
    // scrape include every operation that finished before it.
    keystore.flush_metrics().await;
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(keystore.render_metrics())
}

#[get("/user/{name}")]
async fn user_route(keystore: web::Data<Keystore>, name: web::Path<String>) -> HttpResponse {
    match keystore
        .get_cache::<serde_json::Value>(&format!("user:{name}"))
        .await
    {
        Ok(Some(v)) => HttpResponse::Ok().json(v),
        Ok(None) => HttpResponse::NotFound().body("no such user\n"),
        Err(e) => HttpResponse::ServiceUnavailable().body(format!("{e}\n")),
    }
}

fn get(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(addr)?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let oneshot = std::env::var("OBJDATAKEY_EXAMPLE_ONESHOT").as_deref() == Ok("1");
    let dir = tempfile::tempdir()?;
    // Built inside actix-web's System: the engine's actors join it.
    let keystore = Keystore::connect_keystore(
        Overrides::new()
            .backend(BackendKind::RocksDb)
            .path(dir.path().join("db")),
    )
    .map_err(std::io::Error::other)?;
    keystore
        .set_cache(
            "user:ada",
            &serde_json::json!({"name": "Ada", "roles": ["admin"]}),
            Ttl::Seconds(300),
        )
        .await
        .map_err(std::io::Error::other)?;

    let data = web::Data::new(keystore.clone());
    let port = if oneshot { 0 } else { 8080 };
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .service(metrics_route)
            .service(user_route)
    })
    .workers(1)
    .bind(("127.0.0.1", port))?;
    let addr = server.addrs()[0];
    println!("serving on http://{addr} (routes /user/{{name}} and /metrics)");
    let server = server.run();

    if oneshot {
        let handle = server.handle();
        let server = actix_web::rt::spawn(server);
        let (user, metrics) = actix_web::rt::task::spawn_blocking(move || {
            Ok::<_, std::io::Error>((get(addr, "/user/ada")?, get(addr, "/metrics")?))
        })
        .await
        .map_err(std::io::Error::other)??;
        println!("GET /user/ada ->\n{}", user.lines().last().unwrap_or(""));
        let hits: Vec<&str> = metrics
            .lines()
            .filter(|l| l.starts_with("objdatakey_cache_hits_total"))
            .collect();
        println!(
            "GET /metrics -> {} lines, e.g. {hits:?}",
            metrics.lines().count()
        );
        assert!(metrics.contains("objdatakey_operations_total"));
        assert!(
            hits.iter().any(|l| l.ends_with(" 1")),
            "the hit on /user/ada is in the scrape: {hits:?}"
        );
        handle.stop(true).await;
        server.await.map_err(std::io::Error::other)??;
    } else {
        server.await?;
    }
    keystore.shutdown().await;
    Ok(())
}
