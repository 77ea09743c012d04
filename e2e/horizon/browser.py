"""Drive Horizon's default (Angular) images panel in headless Chromium against Vela.

usage: browser.py --base URL --shots DIR --state STATE.json --user U --password P
                  --steps login,list,create-file,... [--file PATH] [--url URL] [--expect-image NAME]
Steps: login sso-login list create-file create-url filter details edit metadata shared-view deactivate delete.
Each step saves DIR/<NN>-<user>-<step>.png and prints `ok - horizon: STEP (...)`; the first
failure prints `not ok - horizon: STEP: WHY` plus the page's alerts, saves ...-FAILED.png, exits 1.
STATE.json carries {"images": {name: id}, "file_image": name, ...} between invocations.
The URL source needs IMAGES_ALLOW_LOCATION = True (settings.py).
"""
import argparse
import hashlib
import json
import os
import re
import sys
import time
import uuid

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait

ROW = "table tbody tr[ng-repeat-start]"        # one per image in hz-dynamic-table
EMPTY = "table tbody td.no-rows-help"           # "No items to display."
MODAL = ".modal-dialog"
FINISH = ".modal-footer .btn.finish, .modal-footer .btn-primary, .modal-footer .btn-danger"
ALERTS = ".alert, .messages li, .toast, .help-block.error"


class StepFailed(Exception):
    pass


class Horizon:
    def __init__(self, args):
        self.a = args
        self.base = args.base.rstrip("/")
        self.state = {"images": {}}
        if os.path.exists(args.state):
            with open(args.state) as f:
                self.state.update(json.load(f))
        os.makedirs(args.shots, exist_ok=True)
        nums = [int(m.group(1)) for m in map(re.compile(r"^(\d+)-").match, os.listdir(args.shots)) if m]
        self.counter = max(nums, default=0)
        opts = webdriver.ChromeOptions()
        opts.binary_location = "/usr/bin/chromium"
        for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
            opts.add_argument(a)
        self.drv = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
        self.drv.set_page_load_timeout(60)

    # ---- generic helpers -------------------------------------------------------------------
    def wait(self, cond, timeout=30, what="condition"):
        try:
            return WebDriverWait(self.drv, timeout, ignored_exceptions=(StaleElementReferenceException,)).until(
                lambda d: cond())
        except TimeoutException:
            raise StepFailed(f"timed out after {timeout}s waiting for {what}") from None

    def visible(self, css, root=None):
        return [e for e in (root or self.drv).find_elements(By.CSS_SELECTOR, css) if e.is_displayed()]

    def click(self, el):
        self.drv.execute_script("arguments[0].scrollIntoView({block: 'center'});", el)
        el.click()

    def shot(self, step, suffix=""):
        self.counter += 1
        path = os.path.join(self.a.shots, f"{self.counter:02d}-{self.a.user}-{step}{suffix}.png")
        self.drv.save_screenshot(path)
        return path

    def alerts(self):
        return [e.text.strip().replace("\n", " ") for e in self.visible(ALERTS) if e.text.strip()]

    def xhr(self, method, path, body=None):
        """Call Horizon's REST API (/api/...) from the page with the session cookie and CSRF token."""
        res = self.drv.execute_script(
            "var x = new XMLHttpRequest(); x.open(arguments[0], arguments[1], false);"
            "x.setRequestHeader('X-Requested-With', 'XMLHttpRequest');"
            "x.setRequestHeader('Content-Type', 'application/json');"
            "var m = document.cookie.match(/csrftoken=([^;]+)/);"
            "if (m) x.setRequestHeader('X-CSRFToken', m[1]);"
            "x.send(arguments[2]); return [x.status, x.responseText];",
            method, self.base + path, json.dumps(body) if body is not None else None)
        if res[0] != 200:
            raise StepFailed(f"{method} {path}: {res[0]} {res[1][:200]}")
        return json.loads(res[1]) if res[1] else {}

    def api_image(self, image_id):
        """The image as Horizon's REST API gives it, with its "properties" merged in."""
        img = self.xhr("GET", f"/api/glance/images/{image_id}/")
        return {**img, **(img.get("properties") or {})}

    def image_id(self, name):
        ids = [i["id"] for i in self.xhr("GET", "/api/glance/images/")["items"] if i.get("name") == name]
        if not ids:
            raise StepFailed(f"image {name} not in /api/glance/images/")
        return ids[0]

    # ---- the images table ------------------------------------------------------------------
    def open_images(self):
        self.drv.get(self.base + "/project/images/")
        self.wait(lambda: self.visible(ROW) or self.visible(EMPTY), 60, "the images table")
        self.wait(self.idle, 30, "Horizon's API calls to finish")

    def idle(self):
        """No $http request of the Angular app in flight (so an empty table means no images)."""
        return self.drv.execute_script(
            "try { return angular.element(document.body).injector().get('$http')"
            ".pendingRequests.length === 0; } catch (e) { return false; }")

    def table(self):
        """{name: {"status": ..., "row": element, "cols": {...}}} for the rows shown."""
        for _ in range(10):
            try:
                return self._table()
            except StaleElementReferenceException:  # Angular re-rendered the rows; read again
                time.sleep(0.5)
        return self._table()

    def _table(self):
        heads = [h.text.strip() for h in self.drv.find_elements(By.CSS_SELECTOR, "table thead th")
                 if h.is_displayed()]
        out = {}
        for row in self.visible(ROW):
            cells = [c.text.strip() for c in row.find_elements(By.CSS_SELECTOR, "td") if c.is_displayed()]
            cols = dict(zip(heads, cells[len(cells) - len(heads):])) if heads else {}
            out[cols.get("Name", "")] = {"status": cols.get("Status", ""), "row": row, "cols": cols}
        return out

    def wait_status(self, name, status, timeout=60):
        deadline = time.time() + timeout
        while True:
            self.open_images()
            got = self.table().get(name, {}).get("status")
            if got == status:
                return
            if time.time() > deadline:
                raise StepFailed(f"{name} is {got!r} in the list, not {status!r}, after {timeout}s")
            time.sleep(2)

    def row_action(self, name, label):
        """Click a row action (the split button or an entry of its dropdown)."""
        self.open_images()
        row = self.table().get(name, {}).get("row")
        if row is None:
            raise StepFailed(f"no row named {name}")
        cell = row.find_element(By.CSS_SELECTOR, "td.actions_column")
        for b in cell.find_elements(By.CSS_SELECTOR, "button.split-button, button.single-button"):
            if b.text.strip() == label:
                return self.click(b)
        self.click(cell.find_element(By.CSS_SELECTOR, ".dropdown-toggle"))
        items = self.wait(lambda: [a for a in self.visible("a[role=menuitem]", cell) if a.text.strip() == label],
                          10, f"row action {label!r}")
        self.click(items[0])

    def modal(self):
        return self.wait(lambda: self.visible(MODAL), 20, "the modal")[0]

    def finish_modal(self, timeout=60):
        m = self.modal()
        btn = self.wait(lambda: [b for b in self.visible(FINISH, m) if b.is_enabled()], 20,
                        "an enabled submit button")[-1]
        self.click(btn)
        self.wait(lambda: not self.visible(MODAL), timeout, "the modal to close")

    def toggle(self, root, label):
        """Click a uib-btn-radio label (Source Type, Visibility) by its text."""
        for el in self.visible("label.btn", root):
            if el.text.strip() == label:
                return self.click(el)
        raise StepFailed(f"no {label!r} button in the form")

    # ---- steps -----------------------------------------------------------------------------
    def step_login(self):
        self.drv.get(self.base + "/auth/login/")
        self.wait(lambda: self.visible("#id_username"), 30, "the login form")
        domain = self.visible("#id_domain")
        if domain:
            domain[0].clear()
            domain[0].send_keys("Default")
        self.drv.find_element(By.ID, "id_username").send_keys(self.a.user)
        self.drv.find_element(By.ID, "id_password").send_keys(self.a.password)
        self.click(self.drv.find_element(By.CSS_SELECTOR, "#loginBtn, form button[type=submit]"))
        self.wait(lambda: self.visible(".user-menu") or self.visible("form .alert-danger"), 60,
                  "the user menu (logged in)")
        if not self.visible(".user-menu"):
            raise StepFailed("login refused: " + "; ".join(self.alerts()))
        menu = self.visible(".user-menu")[0]
        if menu.text.strip() != self.a.user:
            raise StepFailed(f"user menu shows {menu.text.strip()!r}")
        return f"user menu shows {self.a.user}, at {self.drv.current_url}"

    def step_sso_login(self):
        """WebSSO: Horizon's "OpenID Connect" choice, the provider's login page, back to Horizon."""
        self.drv.get(self.base + "/auth/login/")
        choice = self.wait(lambda: self.visible("#id_auth_type"), 30, "the authentication choice")[0]
        Select(choice).select_by_value("oidc")
        self.click(self.drv.find_element(By.CSS_SELECTOR, "#loginBtn, form button[type=submit]"))
        self.wait(lambda: self.visible("#username") or self.visible(".alert-danger"), 60,
                  "the identity provider's login page")
        if not self.visible("#username"):
            raise StepFailed("no provider login page: " + "; ".join(self.alerts()))
        provider = self.drv.current_url.split("/interaction/")[0]
        if provider.startswith(self.base):
            raise StepFailed(f"still at Horizon: {self.drv.current_url}")
        self.shot("sso-login", "-provider")
        self.drv.find_element(By.ID, "username").send_keys(self.a.user)
        self.drv.find_element(By.ID, "password").send_keys(self.a.password)
        self.click(self.drv.find_element(By.ID, "submit"))
        self.wait(lambda: self.visible(".user-menu") or self.visible(".alert-danger, #error"), 60,
                  "the user menu (signed on)")
        if not self.visible(".user-menu"):
            raise StepFailed(f"sign-on failed at {self.drv.current_url}: " + "; ".join(self.alerts()))
        menu = self.visible(".user-menu")[0].text.strip()
        if menu != self.a.user:
            raise StepFailed(f"user menu shows {menu!r}")
        project = " ".join(e.text.strip() for e in self.visible(".context-project, .context-box"))
        if self.a.project and self.a.project not in project:
            raise StepFailed(f"project menu shows {project!r}, wanted {self.a.project}")
        return f"signed on at {provider}; user menu shows {menu}, project {project!r}"

    def step_list(self):
        self.open_images()
        names = sorted(self.table())
        self.state["listed"] = names
        return f"{len(names)} images: {', '.join(names) or 'none'}"

    def create(self, kind, name, fill):
        self.open_images()
        btn = [b for b in self.visible(".hz-dynamic-table-actions button") if "Create Image" in b.text]
        if not btn:
            raise StepFailed("no Create Image button")
        self.click(btn[0])
        m = self.modal()
        field = self.wait(lambda: self.visible("#imageForm-name", m), 20, "the image name field")[0]
        field.send_keys(name)
        fill(m)
        self.toggle(m, "Private")
        self.finish_modal(120)
        self.wait_status(name, "Active", 60)
        image_id = self.image_id(name)
        self.state["images"][name] = image_id
        self.state[f"{kind}_image"] = name
        return image_id

    def pick_format(self, m, fmt):
        sel = Select(m.find_element(By.ID, "imageForm-format"))
        label = {"raw": "Raw", "qcow2": "QCOW2 - QEMU Emulator"}[fmt]
        sel.select_by_visible_text(label)

    def step_create_file(self):
        path = os.path.abspath(self.a.file or "")
        if not os.path.isfile(path):
            raise StepFailed("--file PATH is needed")
        with open(path, "rb") as f:
            data = f.read()
        fmt = "qcow2" if data[:4] == b"QFI\xfb" else "raw"
        name = f"horizon-file-{uuid.uuid4().hex[:8]}"

        def fill(m):
            sources = [e.text.strip() for e in self.visible("label.btn-toggle", m)]
            if sources:
                self.toggle(m, "File")
            m.find_element(By.CSS_SELECTOR, "input[type=file][name=image_file]").send_keys(path)
            self.pick_format(m, fmt)
        image_id = self.create("file", name, fill)
        img = self.api_image(image_id)
        md5 = hashlib.md5(data).hexdigest()
        self.state["file_md5"] = md5
        if img.get("size") != len(data) or img.get("checksum") != md5:
            raise StepFailed(f"size/checksum {img.get('size')}/{img.get('checksum')}, "
                             f"want {len(data)}/{md5}")
        mode = self.xhr("GET", "/api/settings/").get("HORIZON_IMAGES_UPLOAD_MODE")
        return f"{name} {image_id} Active, {mode} upload, {fmt}, size {len(data)}, checksum matches"

    def step_create_url(self):
        if not self.a.url:
            raise StepFailed("--url URL is needed")
        name = f"horizon-url-{uuid.uuid4().hex[:8]}"

        def fill(m):
            if "URL" not in [e.text.strip() for e in self.visible("label.btn-toggle", m)]:
                raise StepFailed("no URL source in the Create Image modal: set IMAGES_ALLOW_LOCATION = True")
            self.toggle(m, "URL")
            m.find_element(By.ID, "imageForm-image_url").send_keys(self.a.url)
            self.pick_format(m, "raw")
        image_id = self.create("url", name, fill)
        img = self.api_image(image_id)
        return f"{name} {image_id} Active, size {img.get('size')}"

    def file_image(self):
        name = self.state.get("file_image")
        if not name:
            raise StepFailed("no file image in the state (run create-file first)")
        return name, self.state["images"][name]

    def step_filter(self):
        name, _ = self.file_image()
        self.open_images()
        total = len(self.table())
        box = self.wait(lambda: self.visible("magic-search input.search-input"), 10, "the search box")[0]
        self.click(box)
        box.send_keys(name, Keys.ENTER)
        box.send_keys(Keys.ESCAPE)  # close the facet menu
        self.wait(lambda: set(self.table()) == {name}, 20, f"only {name} in the filtered list")
        return f"{total} rows -> 1 row ({name})"

    def step_details(self):
        name, image_id = self.file_image()
        self.open_images()
        link = self.table()[name]["row"].find_element(By.LINK_TEXT, name)
        self.click(link)
        self.wait(lambda: image_id in self.drv.current_url, 20, "the detail page URL")
        body = lambda: self.drv.find_element(By.TAG_NAME, "body").text  # noqa: E731
        md5 = self.state.get("file_md5", "")
        self.wait(lambda: name in body() and "Active" in body() and md5 in body(), 30,
                  "name, Active and the checksum on the detail page")
        size = re.search(r"Size\s*\n?\s*([\d.]+ \w+)", body())
        return f"{self.drv.current_url}: Active, checksum {md5}, size {size.group(1) if size else '?'}"

    def step_edit(self):
        name, image_id = self.file_image()
        self.row_action(name, "Edit Image")
        m = self.modal()
        desc = self.wait(lambda: self.visible("#imageForm-description", m), 20, "the description field")[0]
        desc.clear()
        desc.send_keys("edited by horizon")
        shared = "Shared" in [e.text.strip() for e in self.visible("label.btn", m)]
        if shared:
            self.toggle(m, "Shared")
        self.finish_modal()
        img = self.api_image(image_id)
        want_vis = "shared" if shared else img.get("visibility")
        if img.get("description") != "edited by horizon" or img.get("visibility") != want_vis:
            raise StepFailed(f"API shows description={img.get('description')!r} visibility={img.get('visibility')!r}")
        return f"description and visibility={img['visibility']} saved"

    def step_metadata(self):
        """Add Shutdown Timeout from the catalog (Vela's metadefs) and a custom key."""
        name, image_id = self.file_image()
        self.row_action(name, "Update Metadata")
        m = self.modal()
        custom = self.wait(lambda: self.visible("input[name=customItem]", m), 30, "the custom key field")[0]
        self.wait(lambda: self.visible("li.level-0", m), 20, "the metadata catalog")
        existing = lambda: {i.find_element(By.CSS_SELECTOR, ".input-group-addon").text: i  # noqa: E731
                            for i in self.visible(".metadata-tree-item", m)}
        if "os_shutdown_timeout" not in existing():  # from the catalog: filter, expand, "+"
            self.visible(".metadata-tree .panel-heading input", m)[0].send_keys("os_shutdown_timeout")
            ns = [li for li in self.visible("li.level-0", m) if "Shutdown" in li.text]
            if not ns:
                raise StepFailed("no Shutdown Behavior namespace in the catalog")
            self.click(ns[0])
            leaf = self.wait(lambda: [li for li in self.visible("li.level-1", m) if "Shutdown Timeout" in li.text],
                             10, "the Shutdown Timeout item")[0]
            self.click(leaf.find_element(By.CSS_SELECTOR, "a.btn"))
        if "horizon_test" not in existing():
            custom.send_keys("horizon_test")
            self.click(custom.find_element(By.XPATH, "following::button[1]"))
        for key, value in (("os_shutdown_timeout", "30"), ("horizon_test", "yes")):
            item = self.wait(lambda: existing().get(key), 10, f"the {key} value field")
            field = item.find_element(By.CSS_SELECTOR, "input[name=property]")
            field.clear()
            field.send_keys(value)
        self.finish_modal()
        img = self.api_image(image_id)
        got = {k: str(img.get(k)) for k in ("os_shutdown_timeout", "horizon_test")}
        if got != {"os_shutdown_timeout": "30", "horizon_test": "yes"}:
            raise StepFailed(f"properties not saved: {got}")
        return "os_shutdown_timeout=30 (catalog) and horizon_test=yes (custom) saved"

    def step_shared_view(self):
        if not self.a.expect_image:
            raise StepFailed("--expect-image NAME is needed")
        self.open_images()
        rows = self.table()
        if self.a.expect_image not in rows:
            raise StepFailed(f"{self.a.expect_image} not listed (rows: {sorted(rows)})")
        return f"{self.a.expect_image} listed, visibility {rows[self.a.expect_image]['cols'].get('Visibility')}"

    def step_deactivate(self):
        name, image_id = self.file_image()
        self.row_action(name, "Deactivate Image")
        self.finish_modal()
        self.wait_status(name, "Deactivated", 30)
        return f"{name} Deactivated"

    def step_delete(self):
        names = sorted(self.state["images"])
        if not names:
            raise StepFailed("no images in the state")
        self.open_images()
        rows = self.table()
        missing = [n for n in names if n not in rows]
        if missing:
            raise StepFailed(f"not listed: {missing}")
        for n in names:
            self.click(rows[n]["row"].find_element(By.CSS_SELECTOR, "td.multi_select_column label"))
        btn = [b for b in self.visible(".hz-dynamic-table-actions button") if "Delete Images" in b.text]
        self.wait(lambda: "disabled" not in btn[0].get_attribute("class"), 10, "Delete Images enabled")
        self.click(btn[0])
        self.finish_modal()
        self.wait(lambda: not set(names) & set(self.open_images() or self.table()), 60,
                  "the images to leave the list")
        self.state["images"] = {}
        return f"deleted {', '.join(names)}"

    def run(self, steps):
        try:
            for step in steps:
                fn = getattr(self, "step_" + step.replace("-", "_"), None)
                try:
                    if fn is None:
                        raise StepFailed("unknown step")
                    details = fn()
                except Exception as e:  # noqa: BLE001 - any failure ends the run with a report
                    why = e if isinstance(e, StepFailed) else f"{type(e).__name__}: {e}".split("\n")[0]
                    print(f"not ok - horizon: {step}: {why}", flush=True)
                    self.shot(step, "-FAILED")
                    for text in self.alerts():
                        print(f"#   alert: {text}", flush=True)
                    return 1
                self.shot(step)
                print(f"ok - horizon: {step} ({details})", flush=True)
            return 0
        finally:
            with open(self.a.state, "w") as f:
                json.dump(self.state, f, indent=1)
            self.drv.quit()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for opt in ("--base", "--shots", "--state", "--user", "--password", "--steps"):
        p.add_argument(opt, required=True)
    for opt in ("--file", "--url", "--expect-image", "--project"):
        p.add_argument(opt)
    args = p.parse_args()
    sys.exit(Horizon(args).run([s for s in args.steps.split(",") if s]))


if __name__ == "__main__":
    main()
