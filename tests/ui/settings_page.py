"""The settings page in a real browser: Debian's Chromium, driven by
Playwright, against `make dev` (started by scripts/ui-test.sh).

Each check prints its name; the first failure stops the run with exit 1.
With SCREENSHOTS=<dir>, the page is also captured there at desktop and
narrow widths (make screenshots).
"""

import json
import os
import sys
import time
import urllib.request

from playwright.sync_api import expect, sync_playwright

API = os.environ["API"]
INSPECTOR = os.environ["INSPECTOR"]
TOKEN = os.environ["TOKEN"]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = os.environ.get("SCREENSHOTS")
PROJECT = f"UI{int(time.time())}"


def call(method, path, body=None, base=API, token=TOKEN):
    request = urllib.request.Request(base + path, method=method)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, data) as response:
        text = response.read().decode()
        return json.loads(text) if text else None


def webhooks():
    return call("GET", f"/projects/{PROJECT}/webhooks")["webhooks"]


def sign_in(page):
    page.goto(f"{API}/ui/")
    page.get_by_label("API token (admin or project)").fill(TOKEN)
    page.get_by_label("Project code").fill(PROJECT)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Webhooks", exact=True)).to_be_visible()


def create(page, title, endpoint, entity_all="Test runs (all)"):
    page.get_by_role("button", name="Create new webhook").click()
    page.get_by_label("Title").fill(title)
    page.get_by_label("Endpoint").fill(endpoint)
    page.get_by_label(entity_all).check()
    page.get_by_role("button", name="Save").click()


def main():
    failures = 0
    dialogs = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1100, "height": 800})
        # A dialog the test does not expect is recorded (and dismissed); the
        # rotation's confirmation is accepted when the test asks for it.
        confirm_next = []

        def on_dialog(dialog):
            if confirm_next and dialog.type == "confirm":
                confirm_next.clear()
                dialog.accept()
            else:
                dialogs.append(dialog.message)
                dialog.dismiss()

        page.on("dialog", on_dialog)
        errors = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        # Console errors, except the browser's note on an API answer that is
        # an error on purpose (the invalid endpoint's 400, the second
        # rotation's 409).
        page.on(
            "console",
            lambda m: errors.append(m.text)
            if m.type == "error" and "status of 400" not in m.text and "status of 409" not in m.text
            else None,
        )

        def check(name, fn):
            nonlocal failures
            try:
                fn()
                print(f"ok   {name}")
            except Exception as error:  # noqa: BLE001 - report and stop
                failures += 1
                print(f"FAIL {name}: {error}")
                raise SystemExit(1)

        def ui_without_slash():
            other = browser.new_page()
            other.goto(f"{API}/ui")
            assert other.url == f"{API}/ui/", other.url
            other.get_by_label("API token (admin or project)").fill(TOKEN)
            other.get_by_label("Project code").fill(PROJECT)
            other.get_by_role("button", name="Sign in").click()
            expect(other.get_by_role("heading", name="Webhooks", exact=True)).to_be_visible()
            assert "?" not in other.url and TOKEN not in other.url, other.url
            other.close()
            # Were the script not to run, the form would send no token.
            scriptless = browser.new_context(java_script_enabled=False)
            bare = scriptless.new_page()
            bare.goto(f"{API}/ui")
            bare.locator("#token").fill(TOKEN)
            bare.locator("#project").fill(PROJECT)
            bare.locator("#sign-in-form button[type=submit]").click()
            bare.wait_for_load_state()
            assert TOKEN not in bare.url and PROJECT not in bare.url, bare.url
            scriptless.close()

        def signs_in():
            sign_in(page)
            expect(page.locator("#who")).to_contain_text(PROJECT)

        def creates_and_delivers():
            create(page, "Inspector from the page", f"{INSPECTOR}/ui-{PROJECT}")
            expect(page.locator("#list li")).to_have_count(1)
            expect(page.locator("#list li .title")).to_have_text("Inspector from the page")
            hooks = webhooks()
            assert len(hooks) == 1 and "run.completed" in hooks[0]["events"], hooks
            call("POST", f"/projects/{PROJECT}/events", {"event_name": "run.completed", "payload": {"id": 1}})
            for _ in range(100):
                received = call("GET", f"/ui-{PROJECT}", base=INSPECTOR, token=None)
                if received:
                    break
                time.sleep(0.1)
            assert received and json.loads(received[0]["body"])["event_name"] == "run.completed", received

        def toggles():
            toggle = page.get_by_role("switch", name="Enabled")
            toggle.uncheck()
            expect(page.locator("#list .badge")).to_have_text("disabled")
            assert webhooks()[0]["enabled"] is False
            page.get_by_role("switch", name="Enabled").check()
            expect(page.locator("#list .badge")).to_have_text("active")
            assert webhooks()[0]["enabled"] is True

        def shows_field_errors():
            page.get_by_role("button", name="Create new webhook").click()
            page.get_by_label("Title").fill("Bad endpoint")
            page.get_by_label("Endpoint").fill("ftp://example.com/x")
            page.get_by_label("Test runs (all)").check()
            page.get_by_role("button", name="Save").click()
            expect(page.locator("#endpoint-error")).not_to_be_empty()
            expect(page.locator("#title-error")).to_be_empty()
            page.get_by_role("button", name="Cancel").click()
            assert len(webhooks()) == 1

        def shows_titles_as_text():
            hostile = "<img src=x onerror=alert(1)>"
            create(page, hostile, f"{INSPECTOR}/hostile")
            expect(page.locator("#list li")).to_have_count(2)
            expect(page.locator("#list li .title").nth(1)).to_have_text(hostile)
            assert page.locator("#list img").count() == 0
            page.wait_for_timeout(300)
            assert not dialogs, dialogs

        def reveals_and_rotates_the_signing_secret():
            page.locator("#list li").first.get_by_role("button", name="Edit").click()
            page.get_by_role("button", name="Reveal").click()
            expect(page.locator("#signing-secret")).to_contain_text("whsec_")
            first = page.locator("#signing-secret").text_content()
            confirm_next.append(True)
            page.get_by_role("button", name="Rotate").click()
            expect(page.locator("#signing-note")).to_contain_text("The old secret signs too")
            rotated = page.locator("#signing-secret").text_content()
            assert rotated != first
            # A second rotation inside the overlap is refused, and says why.
            confirm_next.append(True)
            page.get_by_role("button", name="Rotate").click()
            expect(page.locator("#signing-note")).to_contain_text("still signs until")
            assert page.locator("#signing-secret").text_content() == rotated
            # Reopened, the form shows the overlap's end with the secret.
            page.get_by_role("button", name="Cancel").click()
            page.locator("#list li").first.get_by_role("button", name="Edit").click()
            page.get_by_role("button", name="Reveal").click()
            expect(page.locator("#signing-note")).to_contain_text("The previous secret signs too until")
            page.get_by_role("button", name="Cancel").click()

        def inspector(path):
            return call("GET", path, base=INSPECTOR, token=None)

        def wait_for(path, count):
            for _ in range(100):
                received = inspector(path)
                if len(received) >= count:
                    return received
                time.sleep(0.1)
            raise AssertionError(f"{path}: {len(received)} of {count} requests arrived")

        def shows_deliveries_redelivers_and_pings():
            page.locator("#list li").first.get_by_role("button", name="Deliveries").click()
            expect(page.get_by_role("heading", name="Deliveries of “Inspector from the page”")).to_be_visible()
            rows = page.locator("#attempts li")
            expect(rows).to_have_count(1)
            expect(rows.first.locator(".badge")).to_have_text("delivered")
            rows.first.locator("summary").click()
            expect(rows.first.locator("pre").first).to_contain_text("X-Qase-Delivery-Id")
            expect(rows.first.locator("pre").nth(1)).to_contain_text("recorded")
            rows.first.get_by_role("button", name="Redeliver").click()
            expect(page.locator("#deliveries-note")).to_contain_text("Redelivery queued")
            received = wait_for(f"/ui-{PROJECT}", 2)
            assert received[1]["headers"].get("x-qase-redelivery") == "true", received[1]["headers"]
            assert received[1]["body"] == received[0]["body"]
            page.get_by_role("button", name="Send a ping").click()
            expect(page.locator("#deliveries-note")).to_contain_text("Ping queued")
            received = wait_for(f"/ui-{PROJECT}", 3)
            assert json.loads(received[2]["body"])["event_name"] == "webhook.ping", received[2]
            # The sender records each batch once its POSTs end; reload until all three show.
            for _ in range(30):
                page.get_by_label("Show").select_option("failed")
                page.get_by_label("Show").select_option("")
                page.wait_for_timeout(200)
                if rows.count() == 3:
                    break
            expect(rows).to_have_count(3)
            expect(page.locator("#attempts .muted").first).to_contain_text("ping")
            page.get_by_label("Show").select_option("failed")
            expect(page.locator("#no-deliveries")).to_be_visible()
            if SCREENSHOTS:
                page.get_by_label("Show").select_option("")
                expect(rows).to_have_count(3)
                rows.nth(1).locator("summary").click()
                expect(rows.nth(1).locator("pre").first).to_be_visible()
                page.screenshot(path=os.path.join(SCREENSHOTS, "settings-deliveries.png"), full_page=True)
            page.get_by_role("button", name="Back to webhooks").click()
            expect(page.locator("#list li")).to_have_count(2)

        def older_deliveries_follow_their_own_filter():
            hook = call(
                "POST",
                f"/projects/{PROJECT}/webhooks",
                {"title": "Many deliveries", "endpoint": f"{INSPECTOR}/many-{PROJECT}", "events": ["case.created"]},
            )
            for i in range(22):
                call("POST", f"/projects/{PROJECT}/events", {"event_name": "case.created", "payload": {"id": i}})
                time.sleep(0.25)  # within the project's publish share
            wait_for(f"/many-{PROJECT}", 22)
            listing = f"/projects/{PROJECT}/webhooks/{hook['id']}/deliveries?limit=100"
            for _ in range(50):
                if len(call("GET", listing)["deliveries"]) >= 22:
                    break
                time.sleep(0.2)
            page.reload()
            page.locator("#list li", has_text="Many deliveries").get_by_role("button", name="Deliveries").click()
            rows = page.locator("#attempts li")
            expect(rows).to_have_count(20)
            expect(page.locator("#more")).to_be_visible()
            # Hold the filtered page's answer: meanwhile, the unfiltered
            # listing's "Older deliveries" must not be offered.
            held = []
            filtered = lambda url: "/deliveries?" in url and "status=failed" in url  # noqa: E731
            page.route(filtered, lambda route: held.append(route))
            page.get_by_label("Show").select_option("failed")
            expect(page.locator("#more")).to_be_hidden()
            for _ in range(50):
                if held:
                    break
                page.wait_for_timeout(100)
            held[0].continue_()
            page.unroute(filtered)
            expect(page.locator("#no-deliveries")).to_have_text("No failed deliveries recorded.")
            expect(rows).to_have_count(0)
            expect(page.locator("#more")).to_be_hidden()
            page.get_by_label("Show").select_option("")
            expect(rows).to_have_count(20)
            page.locator("#more").click()
            expect(rows).to_have_count(22)
            page.get_by_role("button", name="Back to webhooks").click()
            call("DELETE", f"/projects/{PROJECT}/webhooks/{hook['id']}")
            page.reload()
            expect(page.locator("#list li")).to_have_count(2)

        def custom_headers_are_write_only():
            page.locator("#list li").first.get_by_role("button", name="Edit").click()
            page.get_by_role("button", name="Add header").click()
            page.get_by_label("Header name").fill("Host")
            page.get_by_label("Header value").fill("gw-value-1234")
            page.get_by_role("button", name="Save").click()
            expect(page.locator("#headers-error")).to_contain_text("set by the service")
            page.get_by_label("Header name").fill("X-Gateway")
            page.get_by_role("button", name="Save").click()
            expect(page.locator("#list li")).to_have_count(2)
            assert webhooks()[0]["headers"] == {"x-gateway": "***"}, webhooks()[0]
            # Reopened: the name is shown, the value is not; saving without
            # touching the headers keeps them.
            page.locator("#list li").first.get_by_role("button", name="Edit").click()
            expect(page.get_by_label("Header name")).to_have_value("x-gateway")
            expect(page.get_by_label("Header value")).to_have_value("")
            expect(page.locator("#headers-note")).to_be_visible()
            assert "gw-value-1234" not in page.content()
            page.get_by_role("button", name="Save").click()
            expect(page.locator("#list li")).to_have_count(2)
            assert webhooks()[0]["headers"] == {"x-gateway": "***"}, webhooks()[0]
            count = len(inspector(f"/ui-{PROJECT}"))
            call("POST", f"/projects/{PROJECT}/events", {"event_name": "run.completed", "payload": {"id": 2}})
            received = wait_for(f"/ui-{PROJECT}", count + 1)
            assert received[-1]["headers"].get("x-gateway") == "gw-value-1234", received[-1]["headers"]

        def works_at_360_px():
            page.set_viewport_size({"width": 360, "height": 740})
            page.reload()
            expect(page.locator("#list li")).to_have_count(2)
            width = page.evaluate("document.scrollingElement.scrollWidth")
            assert width <= 360, f"scrolls sideways: {width}px"
            page.locator("#list li").first.get_by_role("button", name="Deliveries").click()
            expect(page.locator("#attempts li")).to_have_count(3)
            page.locator("#attempts li").first.locator("summary").click()
            expect(page.locator("#attempts li").first.locator("pre").first).to_be_visible()
            width = page.evaluate("document.scrollingElement.scrollWidth")
            assert width <= 360, f"the deliveries scroll sideways: {width}px"
            page.get_by_role("button", name="Back to webhooks").click()
            expect(page.locator("#list li")).to_have_count(2)
            if SCREENSHOTS:
                page.screenshot(path=os.path.join(SCREENSHOTS, "settings-narrow.png"), full_page=True)
                page.set_viewport_size({"width": 1100, "height": 800})
                page.screenshot(path=os.path.join(SCREENSHOTS, "settings-desktop.png"), full_page=True)
                page.locator("#list li").first.get_by_role("button", name="Edit").click()
                page.screenshot(path=os.path.join(SCREENSHOTS, "settings-edit.png"), full_page=True)

        def recovers_what_did_not_arrive_and_replays_what_was_missed():
            path = f"/recover-{PROJECT}"
            hook = call(
                "POST",
                f"/projects/{PROJECT}/webhooks",
                {"title": "Back after an outage", "endpoint": f"{INSPECTOR}{path}?status=503", "events": ["run.completed"]},
            )
            deliveries = f"/projects/{PROJECT}/webhooks/{hook['id']}/deliveries"
            call("POST", f"/projects/{PROJECT}/events", {"event_name": "run.completed", "payload": {"id": 30}})
            for _ in range(100):
                if call("GET", deliveries)["deliveries"]:
                    break
                time.sleep(0.1)
            assert call("GET", deliveries)["deliveries"][0]["outcome"] == "failed"
            call("PATCH", f"/projects/{PROJECT}/webhooks/{hook['id']}", {"endpoint": f"{INSPECTOR}{path}"})
            page.reload()
            card = page.locator("#list li", has_text="Back after an outage")
            card.get_by_role("button", name="Deliveries").click()
            page.get_by_text("Recover deliveries that did not arrive").click()
            expect(page.get_by_label("Since")).not_to_have_value("")
            page.get_by_label("At most per second").fill("1000")
            page.get_by_role("button", name="Recover", exact=True).click()
            expect(page.locator("#rate_per_second-error")).to_contain_text("between 1 and 100")
            page.get_by_label("At most per second").fill("5")
            page.get_by_role("button", name="Recover", exact=True).click()
            expect(page.locator("#recover-progress")).to_contain_text("Recovery finished", timeout=30000)
            expect(page.locator("#recover-progress")).to_contain_text("1 delivered")
            received = wait_for(path, 2)
            assert received[1]["headers"].get("x-qase-redelivery") == "true", received[1]["headers"]
            assert received[1]["body"] == received[0]["body"]
            page.get_by_role("button", name="Back to webhooks").click()
            # Off, an event it misses, on again: the page offers the replay.
            card = page.locator("#list li", has_text="Back after an outage")
            card.get_by_role("switch", name="Enabled").uncheck()
            expect(card.locator(".badge")).to_have_text("disabled")
            call("POST", f"/projects/{PROJECT}/events", {"event_name": "run.completed", "payload": {"id": 31}})
            card = page.locator("#list li", has_text="Back after an outage")
            card.get_by_role("switch", name="Enabled").check()
            expect(page.locator("#replay")).to_be_visible()
            page.get_by_role("button", name="Replay what it missed").click()
            expect(page.locator("#replay-progress")).to_contain_text("Recovery finished", timeout=30000)
            received = wait_for(path, 3)
            assert json.loads(received[2]["body"])["payload"] == {"id": 31}, received[2]
            assert received[2]["headers"].get("x-qase-redelivery") == "true"

        def signs_out():
            page.set_viewport_size({"width": 1100, "height": 800})
            page.get_by_role("button", name="Sign out").click()
            expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
            assert page.evaluate("sessionStorage.length") == 0

        def no_script_errors():
            assert not errors, errors

        check("/ui leads to /ui/, whose script runs; no token ever reaches a URL", ui_without_slash)
        check("signs in with the admin token and a project code", signs_in)
        check("creates a webhook through the form; an event arrives at the inspector", creates_and_delivers)
        check("the toggle turns the webhook off and on, and the API agrees", toggles)
        check("an invalid endpoint shows its error beside the Endpoint field", shows_field_errors)
        check("a title with HTML is shown as text and no dialog opens", shows_titles_as_text)
        check("reveals and rotates the signing secret", reveals_and_rotates_the_signing_secret)
        check("lists deliveries with their request and response, redelivers and pings", shows_deliveries_redelivers_and_pings)
        check("a filter change drops the previous listing's cursor; older deliveries page on", older_deliveries_follow_their_own_filter)
        check("works at 360 px wide, deliveries included", works_at_360_px)
        check("custom headers: a refused name says why, values are write-only and arrive", custom_headers_are_write_only)
        check("recovers what did not arrive at a pace, and offers the missed events on re-enable", recovers_what_did_not_arrive_and_replays_what_was_missed)
        check("signs out and forgets the token", signs_out)
        check("no script errors (the CSP blocked nothing the page needs)", no_script_errors)
        browser.close()
    return failures


if __name__ == "__main__":
    sys.exit(1 if main() else 0)
