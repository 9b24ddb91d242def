"""The web app's core forms in Firefox (Debian's firefox-esr, driven by
Selenium through geckodriver): the operator invites, the user sets a
password, signs in, makes a key, has bad input refused next to the field,
offers a share, and every page renders. Run by cluster-tests/tests/it/web.rs;
browser.py covers the same in Chromium, at length.
"""

import os
import shutil
import sys

from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.firefox.options import Options
from selenium.webdriver.firefox.service import Service
from selenium.webdriver.support import expected_conditions as ready
from selenium.webdriver.support.ui import WebDriverWait

WEB = os.environ["WEB_URLS"].split(",")[0]
TOKEN = os.environ["OPERATOR_TOKEN"]
PASSWORD = "correct horse battery"


def check(condition, what):
    if not condition:
        raise AssertionError(what)
    print(f"ok: {what}", flush=True)


def browser():
    options = Options()
    options.add_argument("-headless")
    options.binary_location = os.environ.get("FIREFOX", "/usr/bin/firefox-esr")
    driver = os.environ.get("GECKODRIVER") or shutil.which("geckodriver") or os.path.expanduser("~/.cargo/bin/geckodriver")
    return webdriver.Firefox(options=options, service=Service(executable_path=driver))


def field(driver, label):
    """The input a label names, as a person finds it."""
    target = driver.find_element(By.XPATH, f"//label[normalize-space()='{label}']").get_attribute("for")
    return driver.find_element(By.ID, target)


def submit(driver, button):
    driver.find_element(By.XPATH, f"//button[normalize-space()='{button}']").click()


def heading(driver, text):
    """Whether the page titled `text` shows within 10 s."""
    try:
        WebDriverWait(driver, 10).until(ready.presence_of_element_located((By.XPATH, f"//h1[normalize-space()='{text}']")))
        return True
    except Exception:
        return False


def main():
    operator, user = browser(), browser()
    try:
        operator.get(WEB + "/sign-in")
        operator.find_element(By.TAG_NAME, "summary").click()
        field(operator, "Operator token").send_keys(TOKEN)
        submit(operator, "Sign in as operator")
        check(heading(operator, "Operator"), "Firefox: the operator signs in with the token")
        field(operator, "Invite a new user").send_keys("fox")
        submit(operator, "Invite")
        link = operator.find_element(By.ID, "invite-link").text.strip()
        check("/invite/" in link, "Firefox: the operator invites fox")

        user.get(link)
        field(user, "New password").send_keys(PASSWORD)
        field(user, "The same password again").send_keys(PASSWORD)
        submit(user, "Set password")
        check(heading(user, "Authkeys"), "Firefox: fox sets a password through the link and is signed in")
        user.get(WEB + "/sign-in")
        field(user, "Name").send_keys("fox")
        field(user, "Password").send_keys(PASSWORD)
        submit(user, "Sign in")
        check(heading(user, "Authkeys"), "Firefox: fox signs in")

        for attempt in ("fox-sensor", "fox-sensor"):
            field(user, "Ident").send_keys(attempt)
            field(user, "Publishes to").send_keys("fox.events")
            submit(user, "Create key")
        error = user.find_element(By.ID, "ident-error").text
        check("already taken" in error, "Firefox: a duplicate ident is refused next to its field")
        rows = user.find_elements(By.CSS_SELECTOR, "tbody tr")
        check(len(rows) == 1 and "fox-sensor" in rows[0].text, "Firefox: one key, made in the form")

        user.get(WEB + "/shares")
        field(user, "With (a user, or group:NAME)").send_keys("nobody")
        field(user, "Channel").send_keys("fox.events")
        submit(user, "Offer share")
        check("unknown user" in user.find_element(By.ID, "to-error").text, "Firefox: a share to nobody is refused at the field")

        for path, title in [("/shared-with-you", "Shared with you"), ("/groups", "Groups"), ("/audience", "Audience"),
                            ("/graph", "Graph"), ("/history", "History"), ("/live", "Live"), ("/account", "Account")]:
            user.get(WEB + path)
            check(heading(user, title), f"Firefox: {path} renders")
        user.get(WEB + "/graph")
        check(len(user.find_elements(By.CSS_SELECTOR, "svg.graph")) == 1, "Firefox: the graph is drawn")
        submit(user, "Sign out")
        check(heading(user, "Sign in"), "Firefox: fox signs out")
    finally:
        operator.quit()
        user.quit()
    print("all checks passed", flush=True)


if __name__ == "__main__":
    sys.exit(main())
