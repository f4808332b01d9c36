#!/usr/bin/env python3
"""The Command Center dashboard in a real browser (headless Chromium driven by Selenium).

Starts the real `kotasync-server` on the Binjai sample with two real replicas (the clinic and the
health office) that change the same patient's phone, adds a reviewer and a viewer account, then,
as staff would: logs in as the reviewer, opens the overview and the conflict queue, resolves the
conflict, finds the result in the data browser and the row's history, switches to English, logs
out; logs in as the viewer and finds no way to resolve. A screenshot of every page is written to
the folder given as the first argument (default: .build/browser-screenshots).

Run from the package root after `swift build`:  python3 Tests/Browser/dashboard_browser_test.py
(on a PostgreSQL master: KOTASYNC_BROWSER_MASTER=postgresql://USER@HOST:PORT/EMPTYDB, see below).
"""
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(ROOT, ".build", "debug")
SHOTS = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, ".build", "browser-screenshots"))
SITI = "0b6f2a8e-4c1d-4e0a-9d3b-2f6c1a7e5b01"
checks = 0


def check(condition, message):
    global checks
    checks += 1
    if not condition:
        raise AssertionError(message)


def run(*args, stdin=None):
    result = subprocess.run(args, input=stdin, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({result.returncode}): {result.stdout} {result.stderr}")
    return result.stdout.strip()


def main():
    os.makedirs(SHOTS, exist_ok=True)
    for old in os.listdir(SHOTS):
        os.remove(os.path.join(SHOTS, old))
    work = tempfile.mkdtemp(prefix="kotasync-browser-")
    sample = os.path.join(ROOT, "samples", "binjai")
    for name in ("kotasync.yaml", "seed.sql"):
        shutil.copy(os.path.join(sample, name), work)
    config, master = os.path.join(work, "kotasync.yaml"), os.path.join(work, "master.sqlite")
    # KOTASYNC_BROWSER_MASTER=postgresql://… runs the same pages on an empty PostgreSQL master
    # (its password from KOTASYNC_MASTER_PASSWORD_FILE or PGPASSWORD, as for any command).
    admin = ["--config", config] + (
        ["--master", os.environ["KOTASYNC_BROWSER_MASTER"]] if os.environ.get("KOTASYNC_BROWSER_MASTER")
        else ["--db", master])
    server = subprocess.Popen(
        [os.path.join(BIN, "kotasync-server"), "serve", "--port", "0", "--log-level", "warning"] + admin,
        stdout=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()
        url = re.search(r"http://\S+", line).group(0)
        # Two replicas that change the same patient's phone before either syncs: a conflict.
        replicas = {}
        for opd in ("pkm-binjai-kota", "dinkes"):
            token = run(os.path.join(BIN, "kotasync-server"), "token", "create", "--opd", opd, *admin)
            db = os.path.join(work, f"{opd}.sqlite")
            run(os.path.join(BIN, "kotasync"), "init", "--db", db, "--server", url, "--token", token)
            replicas[opd] = db
        for opd, phone in (("pkm-binjai-kota", "0812-1111-2222"), ("dinkes", "0813-3333-4444")):
            with sqlite3.connect(replicas[opd]) as c:
                c.execute("UPDATE patients SET phone = ? WHERE id = ?", (phone, SITI))
        for opd in ("pkm-binjai-kota", "dinkes"):
            run(os.path.join(BIN, "kotasync"), "sync", "--db", replicas[opd])
        run(os.path.join(BIN, "kotasync-server"), "user", "add", "rina", "--role", "reviewer", *admin,
            stdin="sandi-rina-2026\n")
        run(os.path.join(BIN, "kotasync-server"), "user", "add", "budi", "--role", "viewer", *admin,
            stdin="sandi-budi-2026\n")

        options = Options()
        for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
            options.add_argument(flag)
        options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
        browser = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"),
                                   options=options)
        browser.implicitly_wait(5)
        shot = lambda name: browser.save_screenshot(os.path.join(SHOTS, name + ".png"))
        try:
            def login(name, password):
                browser.get(url + "/dashboard")
                check("/dashboard/login" in browser.current_url, "anonymous visitors are sent to the login page")
                browser.find_element(By.ID, "name").send_keys(name)
                browser.find_element(By.ID, "password").send_keys(password)
                button = browser.find_element(By.ID, "login")
                button.click()
                WebDriverWait(browser, 10).until(expected_conditions.staleness_of(button))

            # A wrong password first.
            login("rina", "salah")
            check("Nama atau kata sandi salah." in browser.page_source, "a wrong password is refused")
            shot("01-login-refused")

            login("rina", "sandi-rina-2026")
            check(browser.find_element(By.ID, "devices").is_displayed(), "the overview lists the devices")
            check(browser.find_elements(By.ID, "changes-chart"), "the overview draws the changes chart")
            check("Perangkat" in browser.page_source, "Bahasa Indonesia by default")
            shot("02-overview")

            browser.find_element(By.LINK_TEXT, "Antrean konflik").click()
            links = browser.find_elements(By.CSS_SELECTOR, "a.record-link")
            check(len(links) >= 1, "the queue lists the conflict")
            shot("03-conflict-queue")
            links[0].click()
            page = browser.page_source
            check("0812-1111-2222" in page and "0813-3333-4444" in page, "the three-way view shows both numbers")
            shot("04-conflict")
            browser.find_element(By.ID, "take-remote").click()
            browser.find_element(By.ID, "note").send_keys("klinik menelepon: nomor ini yang benar")
            browser.find_element(By.ID, "resolve").click()
            check(browser.find_element(By.ID, "flash").text == "Keputusan disimpan.", "the decision is saved")
            check(browser.find_element(By.ID, "status").text == "resolved", "the record is resolved")
            shot("05-resolved")

            browser.find_element(By.LINK_TEXT, "Data").click()
            browser.find_element(By.LINK_TEXT, "patients").click()
            browser.find_element(By.ID, "q").send_keys("Siti")
            before = browser.find_element(By.ID, "rows")
            browser.find_element(By.ID, "search").click()
            WebDriverWait(browser, 10).until(expected_conditions.staleness_of(before))
            rows = browser.find_element(By.ID, "rows").text
            check("Siti Aminah" in rows and "Budi Santoso" not in rows, "the search finds Siti only")
            # take remote: the master now holds the value that had lost.
            # (Read through the command line, which either backend answers.)
            listed = json.loads(run(os.path.join(BIN, "kotasync-server"), "conflicts", "list", "--json", *admin))
            loser = next(c for c in listed["conflicts"] if c.get("column") == "phone")["loser"]["value"]
            resolved_phone = loser["value"] if isinstance(loser, dict) else loser
            check(resolved_phone in rows, f"the data browser shows the decided phone {resolved_phone!r} in {rows!r}")
            shot("06-data-browser")
            browser.find_element(By.CSS_SELECTOR, "a.history-link").click()
            versions = browser.find_element(By.ID, "versions").text
            check("master" in versions, "the row's history shows the decision as the master's change")
            check("pkm-binjai-kota" in versions and "dinkes" in versions, "and both replicas' changes")
            shot("07-row-history")

            browser.find_element(By.ID, "lang-en").click()
            WebDriverWait(browser, 10).until(lambda b: "Conflict queue" in b.page_source)
            check("Devices" in browser.page_source and "Conflict queue" in browser.page_source, "English on request")
            shot("08-overview-english")
            browser.find_element(By.LINK_TEXT, "Audit log").click()
            check(browser.find_elements(By.ID, "audit"), "the audit log page opens")
            shot("09-audit-log")
            browser.find_element(By.ID, "lang-id").click()
            browser.find_element(By.ID, "logout").click()
            WebDriverWait(browser, 10).until(lambda b: "/dashboard/login" in b.current_url)
            check("/dashboard/login" in browser.current_url, "logged out")

            login("budi", "sandi-budi-2026")
            browser.find_element(By.LINK_TEXT, "Antrean konflik").click()
            browser.find_elements(By.CSS_SELECTOR, "a.record-link")[0].click()
            check(not browser.find_elements(By.ID, "resolve-form"), "a viewer is offered no resolve form")
            check(not browser.find_elements(By.LINK_TEXT, "Token"), "a viewer sees no admin pages")
            shot("10-viewer-conflict")
        finally:
            browser.quit()
        # The decision reached both replicas.
        for opd in ("pkm-binjai-kota", "dinkes"):
            run(os.path.join(BIN, "kotasync"), "sync", "--db", replicas[opd])
        phones = {opd: sqlite3.connect(db).execute("SELECT phone FROM patients WHERE id = ?", (SITI,)).fetchone()[0]
                  for opd, db in replicas.items()}
        check(len(set(phones.values())) == 1, f"both replicas hold the decided phone: {phones}")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=20)
        shutil.rmtree(work, ignore_errors=True)
    print(f"dashboard browser test: {checks} checks passed; screenshots in {SHOTS}")


if __name__ == "__main__":
    main()
