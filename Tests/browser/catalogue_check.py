#!/usr/bin/env python3
"""Drives headless Chromium (through chromedriver and Selenium) over the web catalogue of a live
dlhubd: search, filters, paging, a model page, a version's tombstone, copy buttons, citation
downloads, JSON-LD and citation meta tags, a hostile model card, signing in with a `dlhub open`
link, signing out, pages with JavaScript off, on a phone and in print, and basic accessibility
(landmarks, headings, labels, link text, contrast); then all over again through a reverse proxy
that serves it under a prefix, as Open OnDemand's rnode does.

Run by EndToEndTests/WebBrowserTests, which publishes the servables it expects:

    catalogue_check.py --url URL --signin LINK --signin-proxied LINK2 --screenshots DIR --expect EXPECT.json

Prints one line per check and exits 1 if any failed.
"""
import argparse
import http.server
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

failures = []


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


class PrefixProxy(http.server.BaseHTTPRequestHandler):
    """A reverse proxy like Open OnDemand's rnode: /rnode/<host>/<port>/PATH goes to the service
    as /PATH, the prefix stripped; answers (and their Location headers) come back as they are."""

    def do_GET(self):
        self.forward()

    def do_POST(self):
        self.forward()

    def forward(self):
        prefix = self.server.prefix
        if not self.path.startswith(prefix):
            self.send_error(404)
            return
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) if self.command == "POST" else None
        request = urllib.request.Request(self.server.upstream + self.path[len(prefix) - 1:], data=body, method=self.command)
        for name in ["Cookie", "Content-Type", "Sec-Fetch-Site", "Origin"]:
            if self.headers.get(name):
                request.add_header(name, self.headers[name])
        try:
            response = urllib.request.build_opener(NoRedirect).open(request, timeout=60)
        except urllib.error.HTTPError as error:
            response = error
        data = response.read()
        self.send_response(response.getcode())
        for name, value in response.headers.items():
            if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def attacker_page(html):
    """Serves `html` from another origin (127.0.0.2, another port): a site an attacker controls."""
    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = html.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass
    server = http.server.ThreadingHTTPServer(("127.0.0.2", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.2:{server.server_address[1]}/"


def prefix_proxy(upstream):
    port = int(upstream.rsplit(":", 1)[1])
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), PrefixProxy)
    server.upstream = upstream
    server.prefix = f"/rnode/127.0.0.1/{port}/"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}{server.prefix}"


def check(condition, what):
    print(("ok   " if condition else "FAIL ") + what, flush=True)
    if not condition:
        failures.append(what)
    return condition


def browser(javascript=True, width=1280, height=900, downloads=None):
    options = Options()
    options.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    for arg in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={width},{height}", "--lang=en-US", "--no-first-run"]:
        options.add_argument(arg)
    prefs = {}
    if not javascript:
        prefs["profile.managed_default_content_settings.javascript"] = 2
    if downloads:
        prefs.update({"download.default_directory": downloads, "download.prompt_for_download": False})
    if prefs:
        options.add_experimental_option("prefs", prefs)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")), options=options)
    driver.set_page_load_timeout(60)
    if downloads:
        driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": downloads})
    return driver


ACCESSIBILITY = r"""
const out = [];
const count = s => document.querySelectorAll(s).length;
if (count('main') !== 1) out.push('main landmarks: ' + count('main'));
if (count('header') < 1) out.push('no header landmark');
if (count('footer') < 1) out.push('no footer landmark');
if (count('h1') !== 1) out.push('h1 elements: ' + count('h1'));
if (!document.documentElement.lang) out.push('no lang on html');
if (!document.title.trim()) out.push('no title');
let last = 0;
document.querySelectorAll('h1,h2,h3,h4,h5,h6').forEach(h => {
  if (h.closest('.card-body')) return;   // the model card's own headings are its author's
  const level = +h.tagName[1];
  if (last && level > last + 1) out.push('heading jumps from h' + last + ' to h' + level + ': ' + h.textContent.trim().slice(0, 40));
  last = level;
});
document.querySelectorAll('input,select,textarea').forEach(i => {
  if (i.type === 'hidden') return;
  const label = i.id && document.querySelector('label[for="' + i.id + '"]');
  if (!label && !i.getAttribute('aria-label') && !i.closest('label')) out.push('unlabelled input ' + (i.name || i.id));
});
document.querySelectorAll('img').forEach(i => { if (!i.hasAttribute('alt')) out.push('image without alt: ' + i.src); });
document.querySelectorAll('a').forEach(a => { if (!a.textContent.trim() && !a.getAttribute('aria-label')) out.push('link without text: ' + a.href); });
document.querySelectorAll('button').forEach(b => { if (!b.textContent.trim() && !b.getAttribute('aria-label')) out.push('button without text'); });
function rgb(s) { const m = s.match(/rgba?\(([^)]+)\)/); if (!m) return null; const p = m[1].split(',').map(parseFloat); return p.length === 4 ? p : p.concat([1]); }
function lum(c) { const a = c.slice(0, 3).map(v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); }); return 0.2126 * a[0] + 0.7152 * a[1] + 0.0722 * a[2]; }
function background(el) { while (el) { const c = rgb(getComputedStyle(el).backgroundColor); if (c && c[3] > 0.5) return c; el = el.parentElement; } return [255, 255, 255, 1]; }
const seen = new Set();
let measured = 0;
document.querySelectorAll('body *').forEach(el => {
  const st = getComputedStyle(el);
  if (el.getClientRects().length === 0 || st.visibility === 'hidden') return;
  const r = el.getBoundingClientRect();
  if (r.right < 0 || r.bottom < 0) return;   // moved off screen (the skip link until focused)
  if (![...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim())) return;
  measured++;
  const fg = rgb(st.color), bg = background(el);
  const l1 = lum(fg), l2 = lum(bg);
  const ratio = (Math.max(l1, l2) + 0.05) / (Math.min(l1, l2) + 0.05);
  const size = parseFloat(st.fontSize), bold = parseInt(st.fontWeight) >= 700;
  const need = (size >= 24 || (size >= 18.66 && bold)) ? 3 : 4.5;
  if (ratio < need) {
    const key = el.tagName + st.color + bg;
    if (!seen.has(key)) { seen.add(key); out.push('contrast ' + ratio.toFixed(2) + ' < ' + need + ' for ' + el.tagName + ' "' + el.textContent.trim().slice(0, 30) + '"'); }
  }
});
if (measured < 5) out.push('only ' + measured + ' text elements measured');
return out;
"""


def accessible(driver, page):
    problems = driver.execute_script(ACCESSIBILITY)
    check(not problems, f"{page}: accessibility (landmarks, headings, labels, link text, contrast) {problems}")


def csp_violations(driver):
    return [e["message"] for e in driver.get_log("browser") if "Content Security Policy" in e["message"] or "Refused to" in e["message"]]


def navigate(driver, action):
    """Does what loads a new page (a click, Enter in a form) and waits until the new one is in."""
    old = driver.find_element(By.TAG_NAME, "html")
    action()
    WebDriverWait(driver, 30).until(expected_conditions.staleness_of(old))
    WebDriverWait(driver, 30).until(lambda x: x.execute_script("return document.readyState") == "complete")


def cards(driver):
    return driver.find_elements(By.CSS_SELECTOR, "ol.results li.card")


def screenshot(driver, path, max_height=1800):
    height = min(driver.execute_script("return document.documentElement.scrollHeight"), max_height)
    width = driver.execute_script("return window.outerWidth")
    driver.set_window_size(width, height)
    driver.execute_script("window.scrollTo(0, 0)")
    time.sleep(0.2)
    driver.save_screenshot(path)
    driver.set_window_size(width, 900)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--signin", required=True)
    parser.add_argument("--signin-proxied", required=True, help="a second one-time link, for the pass through a proxy")
    parser.add_argument("--signin-other", required=True, help="bob's one-time link, which another site sends the browser to")
    parser.add_argument("--screenshots", required=True)
    parser.add_argument("--expect", required=True)
    args = parser.parse_args()
    base = args.url.rstrip("/")
    expect = json.load(open(args.expect))
    os.makedirs(args.screenshots, exist_ok=True)
    downloads = os.path.join(args.screenshots, "downloads")
    os.makedirs(downloads, exist_ok=True)

    d = browser(downloads=downloads)
    try:
        # --- Search, anonymously.
        d.get(base + "/")
        check("DLHub" in d.title, f"home: title '{d.title}'")
        titles = [c.find_element(By.TAG_NAME, "h2").text for c in cards(d)]
        check(len(titles) == 20, f"home: the first page holds 20 cards ({len(titles)})")
        body = d.find_element(By.TAG_NAME, "body").text
        check(expect["private_title"] not in body, "home: the private servable is not listed anonymously")
        check("Page 1 of 2" in body, "home: paging says page 1 of 2")
        accessible(d, "home")
        screenshot(d, os.path.join(args.screenshots, "search.png"), max_height=1100)
        navigate(d, d.find_element(By.CSS_SELECTOR, "a[rel=next]").click)
        check("page=2" in d.current_url and len(cards(d)) == expect["public_count"] - 20,
              f"paging: page 2 holds the rest ({len(cards(d))} of {expect['public_count']})")
        check(d.find_elements(By.CSS_SELECTOR, "a[rel=prev]") != [], "paging: page 2 links back")

        box = d.find_element(By.ID, "site-q")
        box.clear()
        navigate(d, lambda: box.send_keys(expect["query"] + Keys.ENTER))
        found = [c.find_element(By.TAG_NAME, "h2").text for c in cards(d)]
        check(found == [expect["title"]], f"search '{expect['query']}': {found}")

        d.get(base + "/")
        facet = [a for a in d.find_elements(By.CSS_SELECTOR, "ul.facets a") if a.text.startswith(expect["domain"] + " (")]
        if check(len(facet) == 1, f"filters: a facet link for {expect['domain']}"):
            n = int(facet[0].text.split("(")[1].rstrip(")"))
            navigate(d, facet[0].click)
            tags = [[t.text for t in c.find_elements(By.CSS_SELECTOR, "ul.tags li")] for c in cards(d)]
            check(len(tags) == min(n, 20) and all(expect["domain"] in t for t in tags),
                  f"filters: domain {expect['domain']} keeps its {n} servables only")
        d.get(base + "/")
        d.find_element(By.ID, "f-author").send_keys(expect["author_query"])
        navigate(d, d.find_element(By.CSS_SELECTOR, ".filters button[type=submit]").click)
        found = [c.find_element(By.TAG_NAME, "h2").text for c in cards(d)]
        check(found == [expect["title"]], f"filters: author '{expect['author_query']}' finds {found}")
        d.get(base + "/?year=1999")
        check(cards(d) == [] and "No servable" in d.find_element(By.TAG_NAME, "main").text, "filters: year 1999 finds nothing, and says so")
        d.get(base + "/?type=" + expect["type"])
        check(len(cards(d)) >= 1 and all(expect["type"] in c.text for c in cards(d)), f"filters: type {expect['type']}")

        # --- A model page, from its search result.
        d.get(base + "/?q=" + expect["query"])
        navigate(d, cards(d)[0].find_element(By.CSS_SELECTOR, "h2 a").click)
        check(d.current_url.endswith("/" + expect["id"]), f"model page: the card links to /{expect['id']} ({d.current_url})")
        check(d.find_element(By.TAG_NAME, "h1").text == expect["title"], "model page: its title is the h1")
        orcid = d.find_elements(By.CSS_SELECTOR, "dl.summary a[href^='https://orcid.org/']")
        check([a.get_attribute("href") for a in orcid] == ["https://orcid.org/" + expect["orcid"]], "model page: the author's ORCID link")
        related = [a.get_attribute("href") for a in d.find_elements(By.CSS_SELECTOR, "dl.summary a[href^='https://doi.org/']")]
        check("https://doi.org/" + expect["related_doi"] in related, f"model page: the related paper links to its DOI {related}")
        check("https://doi.org/" + expect["doi"] in related, "model page: the site's DOI links to doi.org")
        rows = d.find_elements(By.CSS_SELECTOR, "table.versions tbody tr")
        check(len(rows) == 2, f"model page: two versions listed ({len(rows)})")
        usage = d.find_elements(By.CSS_SELECTOR, "p.usage")
        check(len(usage) == 1 and "answered since the service started" in usage[0].text, "model page: usage from the service's counters")

        # The hostile model card: rendered, and inert.
        card = d.find_element(By.CSS_SELECTOR, ".model-card .card-body")
        check(expect["card_marker"] in card.text, "model card: rendered")
        check(d.execute_script("return window.__dlhub_pwned === undefined"), "model card: no script ran (window.__dlhub_pwned unset)")
        inert = d.execute_script("""
            const card = document.querySelector('.model-card .card-body');
            const out = [];
            card.querySelectorAll('*').forEach(el => {
              if (['SCRIPT','IFRAME','IMG','SVG','STYLE','LINK','META','FORM','BASE','OBJECT','EMBED','INPUT','DIV','DETAILS'].includes(el.tagName.toUpperCase())) out.push('element ' + el.tagName);
              for (const a of el.attributes) if (a.name.startsWith('on') || a.name === 'style' || a.name === 'src') out.push(el.tagName + ' ' + a.name);
            });
            card.querySelectorAll('a[href]').forEach(a => {
              const u = new URL(a.href, location.href);
              if (!['http:', 'https:', 'mailto:'].includes(u.protocol)) out.push('link to ' + a.href);
            });
            const body = getComputedStyle(document.body);
            if (body.display === 'none' || document.body.offsetHeight < 200) out.push('the page was hidden');
            return out;""")
        check(not inert, f"model card: no active element, handler, style or unsafe link {inert}")
        for link in card.find_elements(By.TAG_NAME, "a"):
            href = link.get_attribute("href") or ""
            if href.startswith(base) and "#" not in href:
                navigate(d, link.click)
                navigate(d, d.back)
                break
        check(d.execute_script("return window.__dlhub_pwned === undefined"), "model card: still no script ran after following its links")

        # Machine-readable citation.
        ld = json.loads(d.find_element(By.CSS_SELECTOR, "script[type='application/ld+json']").get_attribute("textContent"))
        check(ld.get("name") == expect["title"] and ld.get("version") == str(expect["version"]), f"JSON-LD: name and version {ld.get('name')!r} {ld.get('version')!r}")
        check(any(a.get("@id") == "https://orcid.org/" + expect["orcid"] for a in ld.get("author", [])), "JSON-LD: the author's ORCID")
        check("https://doi.org/" + expect["doi"] in ld.get("identifier", []), "JSON-LD: the DOI")
        meta = {}
        for m in d.find_elements(By.CSS_SELECTOR, "meta[name^='citation_']"):
            meta.setdefault(m.get_attribute("name"), []).append(m.get_attribute("content"))
        check(meta.get("citation_title") == [expect["title"]], f"meta: citation_title {meta.get('citation_title')}")
        check(meta.get("citation_author") == expect["authors"], f"meta: citation_author {meta.get('citation_author')}")
        check(meta.get("citation_doi") == [expect["doi"]], f"meta: citation_doi {meta.get('citation_doi')}")
        check(meta.get("citation_version") == [str(expect["version"])], "meta: citation_version")
        dates = meta.get("citation_publication_date", [""])
        check(len(dates[0]) == 10 and dates[0][4] == "/" and dates[0][7] == "/", f"meta: citation_publication_date {dates}")
        alternates = [l.get_attribute("href") for l in d.find_elements(By.CSS_SELECTOR, "link[rel=alternate]")]
        check(any(h.endswith(f"/v1/servables/{expect['id']}@{expect['version']}") for h in alternates), f"rel=alternate to the JSON API {alternates}")
        check(any("citation?format=datacite" in h for h in alternates), "rel=alternate to the DataCite document")

        # Copy a snippet: the button shows (script is on), copies, says so.
        d.execute_cdp_cmd("Browser.grantPermissions", {"origin": base, "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]})
        button = d.find_element(By.CSS_SELECTOR, "button[data-copy=run-cli]")
        check(button.is_displayed(), "copy: the button shows when script runs")
        expected_line = d.find_element(By.ID, "run-cli").get_attribute("textContent")
        check(expected_line.startswith(f"dlhub run {expect['id']} --input "), f"how to run: the CLI line {expected_line!r}")
        button.click()
        time.sleep(0.5)
        check(button.text == "Copied", f"copy: the button says Copied ({button.text!r})")
        copied = d.execute_async_script("const done = arguments[0]; navigator.clipboard.readText().then(done, e => done('ERROR ' + e));")
        check(copied == expected_line, f"copy: the clipboard holds the line ({copied!r})")
        py = d.find_element(By.ID, "run-python").get_attribute("textContent")
        check(f'dl.run("{expect["id"]}"' in py, "how to run: the Python lines")
        curl = d.find_element(By.ID, "run-curl").get_attribute("textContent")
        check(f"/v1/servables/{expect['id']}/run" in curl and "munge -s dlhub-service:" in curl, "how to run: the curl line")

        # Download the citation.
        for f in os.listdir(downloads):
            os.remove(os.path.join(downloads, f))
        link = d.find_element(By.CSS_SELECTOR, "a[download$='.bib']")
        link.click()
        path, deadline = None, time.time() + 20
        while time.time() < deadline:
            done = [f for f in os.listdir(downloads) if f.endswith(".bib")]
            if done:
                path = os.path.join(downloads, done[0])
                break
            time.sleep(0.2)
        text = open(path).read() if path else ""
        check(text.startswith("@") and expect["doi"] in text, f"citation: the BibTeX download ({path})")
        check(not csp_violations(d), f"no Content-Security-Policy violation on these pages {csp_violations(d)}")
        accessible(d, "model page")
        screenshot(d, os.path.join(args.screenshots, "model.png"), max_height=1320)

        # A withdrawn version: its tombstone.
        navigate(d, d.find_element(By.CSS_SELECTOR, "table.versions a").click)
        tomb = d.find_elements(By.CSS_SELECTOR, "section.tombstone")
        check(len(tomb) == 1 and expect["withdraw_reason"] in tomb[0].text, "version 1: the tombstone with its reason")
        check(d.find_elements(By.CSS_SELECTOR, "section.run") == [], "version 1: no 'how to run' for a withdrawn version")

        # --- Signing in with a `dlhub open` link, and out.
        d.get(base + "/" + expect["private_id"])
        check(d.find_element(By.TAG_NAME, "h1").text == "Not found", "private: anonymous visitors get Not found")
        d.get(args.signin)
        check(d.current_url.endswith("/" + expect["private_id"]), f"sign in: lands on the page the link named ({d.current_url})")
        check(d.find_element(By.TAG_NAME, "h1").text == expect["private_title"], "sign in: the private servable shows")
        check("Signed in as alice" in d.find_element(By.TAG_NAME, "header").text, "sign in: the header says who")
        cookie = [c for c in d.get_cookies() if c["name"] == "dlhub_session"]
        check(len(cookie) == 1 and cookie[0].get("httpOnly") and cookie[0].get("sameSite") == "Strict", f"sign in: the cookie is HttpOnly and SameSite=Strict {cookie}")
        check("dlhub_session" not in d.execute_script("return document.cookie"), "sign in: script cannot read the cookie")
        d.get(base + "/?q=" + expect["private_query"])
        check([c.find_element(By.TAG_NAME, "h2").text for c in cards(d)] == [expect["private_title"]], "sign in: search finds the private servable")
        accessible(d, "signed-in search")
        # Login CSRF: a page elsewhere sends the browser to bob's link. It must not sign the
        # visitor in as bob: the link only asks, and alice stays signed in.
        evil = attacker_page(f'<!DOCTYPE html><script>location = {json.dumps(args.signin_other)};</script>')
        d.get(evil)
        WebDriverWait(d, 20).until(lambda x: x.current_url.startswith(base))
        check("Sign in as bob?" in d.find_element(By.TAG_NAME, "h1").text, f"login CSRF: a cross-site arrival only asks ({d.current_url})")
        d.get(base + "/" + expect["private_id"])
        check("Signed in as alice" in d.find_element(By.TAG_NAME, "header").text, "login CSRF: alice is still signed in as alice")
        navigate(d, d.find_element(By.CSS_SELECTOR, "header form.session button").click)
        check(d.current_url.rstrip("/") == base, f"sign out: back to the search page ({d.current_url})")
        d.get(base + "/" + expect["private_id"])
        check(d.find_element(By.TAG_NAME, "h1").text == "Not found", "sign out: the private servable is hidden again")
        d.get(args.signin)
        check("does not work" in d.find_element(By.TAG_NAME, "h1").text, "sign in: a link works once")
    finally:
        d.quit()

    # --- With JavaScript off: everything reads, search works, copy buttons stay hidden.
    d = browser(javascript=False)
    try:
        d.get(base + "/" + expect["id"])
        check(d.find_element(By.TAG_NAME, "h1").text == expect["title"], "no script: the model page renders")
        check(not d.find_element(By.CSS_SELECTOR, "button[data-copy=run-cli]").is_displayed(), "no script: copy buttons stay hidden")
        box = d.find_element(By.ID, "site-q")
        navigate(d, lambda: box.send_keys(expect["query"] + Keys.ENTER))
        check([c.find_element(By.TAG_NAME, "h2").text for c in cards(d)] == [expect["title"]], "no script: search works")
    finally:
        d.quit()

    # --- On a phone, and in print.
    d = browser(width=390, height=844)
    try:
        d.get(base + "/" + expect["id"])
        overflow = d.execute_script("return document.documentElement.scrollWidth - document.documentElement.clientWidth")
        check(overflow <= 1, f"phone: no sideways scrolling ({overflow}px too wide)")
        d.save_screenshot(os.path.join(args.screenshots, "phone.png"))
        d.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": "print"})
        hidden = d.execute_script("return getComputedStyle(document.querySelector('header form[role=search]')).display")
        check(hidden == "none", "print: the search form is left out")
    finally:
        d.quit()

    # --- Behind a proxy that serves the catalogue under a prefix: every link stays under it.
    server, proxied = prefix_proxy(base)
    d = browser()
    try:
        d.get(proxied)
        check(d.find_element(By.TAG_NAME, "h1").text == "Models on this cluster", f"proxy: the search page under {proxied}")
        band = d.execute_script("return getComputedStyle(document.querySelector('header')).backgroundColor")
        check(band == "rgb(16, 48, 79)", f"proxy: the stylesheet loads through the prefix ({band})")
        facet = d.find_elements(By.CSS_SELECTOR, "ul.facets a")[0]
        navigate(d, facet.click)
        check(d.current_url.startswith(proxied + "?"), f"proxy: a facet link stays under the prefix ({d.current_url})")
        d.get(proxied + "?q=" + expect["query"])
        navigate(d, cards(d)[0].find_element(By.CSS_SELECTOR, "h2 a").click)
        check(d.current_url == proxied + expect["id"], f"proxy: a result links under the prefix ({d.current_url})")
        navigate(d, d.find_element(By.CSS_SELECTOR, "table.versions a").click)
        check(d.current_url == proxied + expect["id"] + "@1", f"proxy: a version link stays under the prefix ({d.current_url})")
        navigate(d, d.find_element(By.CSS_SELECTOR, "header a.brand").click)
        check(d.current_url == proxied, f"proxy: the brand link goes to the prefix's root ({d.current_url})")
        d.get(args.signin_proxied.replace(base + "/", proxied))
        check(d.current_url == proxied + expect["private_id"], f"proxy: signing in lands under the prefix ({d.current_url})")
        check(d.find_element(By.TAG_NAME, "h1").text == expect["private_title"], "proxy: signed in, the private servable shows")
        navigate(d, d.find_element(By.CSS_SELECTOR, "header form.session button").click)
        check(d.current_url == proxied, f"proxy: signing out goes back to the prefix's root ({d.current_url})")
        d.get(proxied + expect["private_id"])
        check(d.find_element(By.TAG_NAME, "h1").text == "Not found", "proxy: signed out, the private servable is hidden")
    finally:
        d.quit()
        server.shutdown()

    print(f"{len(failures)} check(s) failed" if failures else "all checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
