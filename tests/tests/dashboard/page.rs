//! `GET /_emulator/ui` in a real headless Chromium: the page draws the topology, follows a
//! failover live through the event stream, and its buttons reach the APIs.

use std::time::Duration;

use e2e::browser::Browser;
use e2e::{SETTLE, TestServer, poll_until, raw_get, wait_group_available};

use crate::create_group;

/// How long the page may take to show a change it was told about.
const PAGE_TIMEOUT: Duration = Duration::from_secs(20);

/// What the page shows of its nodes, for failure messages.
const NODES: &str = "[...document.querySelectorAll('[data-node]')].map(n => \
    n.closest('[data-zone]').dataset.zone + ' ' + n.dataset.node + ' ' + n.dataset.role + ' ' + n.dataset.health)";

/// A JS test: the node `cluster/0001` is drawn in the column of `zone` with `role`.
fn shown(zone: &str, cluster: &str, role: &str) -> String {
    format!(
        "document.querySelector('[data-zone=\"{zone}\"] [data-node=\"{cluster}/0001\"][data-role=\"{role}\"]') !== null"
    )
}

#[tokio::test]
async fn the_page_follows_a_test_failover_live_and_its_button_starts_one() {
    let server = TestServer::start().await;
    let client = server.client();
    create_group(&client, "shop", 3).await;
    let g = wait_group_available(&client, "shop").await;
    let members = g.node_groups()[0].node_group_members();
    let zone_of = |id: &str| {
        members.iter().find(|m| m.cache_cluster_id() == Some(id)).unwrap().preferred_availability_zone().unwrap()
    };
    let old = members.iter().find(|m| m.current_role() == Some("primary")).unwrap().cache_cluster_id().unwrap();

    let (status, html) = raw_get(server.addr(), "/_emulator/ui").await.unwrap();
    assert_eq!(status, 200);
    assert!(!html.contains("http://") && !html.contains("https://"), "the page fetches nothing from elsewhere");

    let url = format!("{}/_emulator/ui", server.endpoint());
    let mut page = Browser::open(&url, 1400, 900).await.unwrap();
    page.wait_for("the primary in its zone", &shown(zone_of(old), old, "primary"), NODES, PAGE_TIMEOUT).await.unwrap();
    page.wait_for(
        "the event stream open",
        "document.body.dataset.live === 'open'",
        "document.body.dataset.live",
        PAGE_TIMEOUT,
    )
    .await
    .unwrap();
    let first_render = page.eval("Number(document.body.dataset.firstRender)").await.unwrap();
    println!("dashboard: first render {first_render} ms after navigation start (headless Chromium, 3 nodes)");
    let endpoint = g.node_groups()[0].primary_endpoint().unwrap();
    let primary_endpoint = format!("{}:{}", endpoint.address().unwrap(), endpoint.port().unwrap());
    let shown_endpoint = page
        .eval("document.querySelector('[data-group=\"shop\"] [data-endpoint=\"primary\"]').textContent")
        .await
        .unwrap();
    assert_eq!(shown_endpoint, primary_endpoint.as_str(), "the page shows Describe's primary endpoint");

    // TestFailover through the page's own button (the Query API, unsigned); the page is not
    // reloaded: the event stream tells it to draw again.
    let renders = page.eval("Number(document.body.dataset.renders)").await.unwrap();
    page.eval(
        "document.querySelector('button[data-action=\"failover\"][data-group=\"shop\"][data-shard=\"0001\"]').click()",
    )
    .await
    .unwrap();
    let g = poll_until("a new primary in Describe", SETTLE, || async {
        let g = e2e::describe_group(&client, "shop").await;
        let primary = g.node_groups()[0].node_group_members().iter().find(|m| m.current_role() == Some("primary"));
        match primary.and_then(|m| m.cache_cluster_id()) {
            Some(id) if id != old && g.status() == Some("available") => Ok(g),
            other => Err(format!("primary {other:?}, status {:?}", g.status())),
        }
    })
    .await;
    let members = g.node_groups()[0].node_group_members();
    let new = members.iter().find(|m| m.current_role() == Some("primary")).unwrap().cache_cluster_id().unwrap();
    let zone_of = |id: &str| {
        members.iter().find(|m| m.cache_cluster_id() == Some(id)).unwrap().preferred_availability_zone().unwrap()
    };
    let settled = format!("{} && {}", shown(zone_of(new), new, "primary"), shown(zone_of(old), old, "replica"));
    page.wait_for("the new primary in its zone, the old one a replica", &settled, NODES, PAGE_TIMEOUT).await.unwrap();
    let events = "[...document.querySelectorAll('#events li[data-source=\"shop\"]')].map(li => li.textContent)";
    page.wait_for(
        "the failover's events in the list",
        &format!("{events}.some(t => t.includes('Test Failover API called for node group 0001'))"),
        events,
        PAGE_TIMEOUT,
    )
    .await
    .unwrap();
    let later = page.eval("Number(document.body.dataset.renders)").await.unwrap();
    assert!(later.as_u64() > renders.as_u64(), "drawn again without a reload: {renders} then {later}");
    assert_eq!(page.eval("performance.getEntriesByType('navigation').length").await.unwrap(), 1, "one page load");

    // A refusal shows AWS's error code and message.
    page.eval("testFailover('shop', '0009').catch(e => say(e.message, true))").await.unwrap();
    let message = "document.querySelector('#message').textContent";
    page.wait_for("the refusal", &format!("{message}.includes('NodeGroupNotFoundFault')"), message, PAGE_TIMEOUT)
        .await
        .unwrap();

    // A zone outage through the page: its column is marked.
    let zone = zone_of(old);
    page.eval(&format!("document.querySelector('button[data-action=\"zone-outage\"][data-zone=\"{zone}\"]').click()"))
        .await
        .unwrap();
    let marked = format!("document.querySelector('[data-zone=\"{zone}\"]').dataset.outage === 'true'");
    page.wait_for("the zone in an outage", &marked, "document.body.innerText.slice(0, 400)", PAGE_TIMEOUT)
        .await
        .unwrap();
    page.eval(&format!("document.querySelector('button[data-action=\"zone-outage\"][data-zone=\"{zone}\"]').click()"))
        .await
        .unwrap();
    let ended = format!("document.querySelector('[data-zone=\"{zone}\"]').dataset.outage === 'false'");
    page.wait_for("the outage over", &ended, "document.body.innerText.slice(0, 400)", PAGE_TIMEOUT).await.unwrap();
    page.wait_for(
        "every node healthy again",
        "[...document.querySelectorAll('[data-node]')].every(n => n.dataset.health === 'healthy')",
        NODES,
        PAGE_TIMEOUT,
    )
    .await
    .unwrap();

    // A screenshot: a real PNG of a drawn page, not a blank one.
    let png = page.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    let (width, height) =
        (u32::from_be_bytes(png[16..20].try_into().unwrap()), u32::from_be_bytes(png[20..24].try_into().unwrap()));
    assert_eq!((width, height), (1400, 900), "the window's size");
    assert!(png.len() > 20_000, "a drawn page is more than {} bytes", png.len());
    let path = std::env::var_os("DASHBOARD_SCREENSHOT")
        .map_or_else(|| server.state_path().join("dashboard.png"), std::path::PathBuf::from);
    std::fs::write(&path, &png).unwrap();
    println!("dashboard: screenshot {} bytes at {}", png.len(), path.display());
}
