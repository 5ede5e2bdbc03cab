"""The HTML report of a real analysis, opened in a real headless browser.

Debian's chromium driven through its chromium-driver by Selenium (installed by `make setup`); the
analysis runs on the session's real tritonserver and redis-server over real held-out reviews.
"""
import shutil
from dataclasses import asdict

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from reviewlens.client import report
from reviewlens.client.analysis import Entity
from reviewlens.client.settings import Settings
from reviewlens.client.sync import SyncAnalyzer
from reviewlens.local.sample_data import best_covered_movies

TITLE = "Review analysis of two held-out movies"
# As many as tests/test_client.py takes of the same movies: in a full run their sentences and names
# can be in the session's Redis already.
REVIEWS_PER_ENTITY = 6
BROWSER_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage")


@pytest.fixture(scope="module")
def analysis(triton, redis_server) -> dict:
    """Two movies analysed in one call (each the other's rival), then the first one alone."""
    entities = [Entity(movie, texts[:REVIEWS_PER_ENTITY], movie.replace("_", " ").title())
                for movie, texts in best_covered_movies(2).items()]
    settings = Settings(urls=(triton.grpc_url,), redis_url=redis_server.url)
    with SyncAnalyzer(settings) as analyzer:
        results = [r.to_json() for r in analyzer.analyze_many(entities)]
        calls = [asdict(call) for call in analyzer.metrics.calls]
        summary = analyzer.metrics.summary(settings.sla_ttft_s)
        alone = analyzer.analyze(entities[0]).to_json()
    assert any(r["aspects"] for r in results), "the analysis found no aspect: nothing for the report to show"
    return {"results": results, "summary": summary, "calls": calls, "alone": alone}


@pytest.fixture(scope="module")
def browser():
    driver = shutil.which("chromedriver")
    if driver is None or shutil.which("chromium") is None:
        pytest.fail("chromium or chromedriver missing: run `make setup` (APT_PACKAGES chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in BROWSER_FLAGS:
        options.add_argument(flag)
    # An explicit driver path: Selenium Manager never downloads a browser or a driver.
    chrome = webdriver.Chrome(service=Service(executable_path=driver), options=options)
    yield chrome
    chrome.quit()


def open_report(browser, tmp_path, results: list[dict], summary: dict, calls: list[dict]):
    page = tmp_path / "report.html"
    page.write_text(report.render(results, summary, calls, TITLE), encoding="utf-8")
    browser.get(page.as_uri())
    return browser


@pytest.fixture
def page(browser, analysis, tmp_path):
    return open_report(browser, tmp_path, analysis["results"], analysis["summary"], analysis["calls"])


def sections(page, results: list[dict]):
    """(section element, its entity's result) pairs, checked to be in the results' order."""
    found = page.find_elements(By.CSS_SELECTOR, "section.entity")
    assert [s.get_attribute("data-entity") for s in found] == [r["entity_id"] for r in results]
    return zip(found, results)


def aspect_elements(section, polarity: str):
    return section.find_elements(By.CSS_SELECTOR, f'.polarity[data-polarity="{polarity}"] details.aspect')


def test_the_report_renders_with_its_title_and_one_section_per_entity(page, analysis):
    assert page.title == TITLE
    for section, result in sections(page, analysis["results"]):
        assert section.find_element(By.TAG_NAME, "h2").text == result["entity_name"]
        assert f"{round(result['sentiment_ratio']['positive'] * 100)} % positive" in section.text


@pytest.mark.parametrize("polarity", ["positive", "negative"])
def test_each_aspect_shows_its_review_count_share_and_mentions(page, analysis, polarity):
    for section, result in sections(page, analysis["results"]):
        aspects = [a for a in result["aspects"] if a["polarity"] == polarity]
        shown = aspect_elements(section, polarity)
        assert [e.get_attribute("data-aspect") for e in shown] == [a["name"] for a in aspects]
        for element, aspect in zip(shown, aspects):
            reviews = f"{aspect['reviews']} review{'s' if aspect['reviews'] != 1 else ''}"
            assert element.find_element(By.CSS_SELECTOR, ".count").text == f"{reviews} · {round(aspect['share'] * 100)} %"
            assert element.get_attribute("data-count") == str(aspect["reviews"])
            assert element.find_element(By.CSS_SELECTOR, ".mentions").text == f"{aspect['mentions']} mentions"
            track, filled = element.find_elements(By.CSS_SELECTOR, "svg.share-bar rect")
            bar = float(filled.get_attribute("width")) / float(track.get_attribute("width"))
            assert bar == pytest.approx(aspect["share"], abs=0.01)


def test_clicking_an_aspect_reveals_its_quotes(page, analysis):
    for section, result in sections(page, analysis["results"]):
        for polarity in ("positive", "negative"):
            aspects = [a for a in result["aspects"] if a["polarity"] == polarity]
            for element, aspect in zip(aspect_elements(section, polarity), aspects):
                quotes = element.find_elements(By.CSS_SELECTOR, ".quote")
                assert len(quotes) == len(aspect["evidence"])
                assert not any(q.is_displayed() for q in quotes)
                element.find_element(By.TAG_NAME, "summary").click()
                assert all(q.is_displayed() for q in quotes)


def test_every_quote_is_its_review_text_at_its_offsets(page, analysis):
    for section, result in sections(page, analysis["results"]):
        evidence = [q for a in result["aspects"] for q in a["evidence"]]
        evidence += [q for kind in ("strengths", "weaknesses") for item in result[kind] for q in item["evidence"]]
        quotes = section.find_elements(By.CSS_SELECTOR, ".quote")
        assert len(quotes) == len(evidence)
        for quote in quotes:
            review, start, end = (int(quote.get_attribute(f"data-{a}")) for a in ("review", "start", "end"))
            text = quote.find_element(By.CSS_SELECTOR, ".quote-text").get_attribute("textContent")
            assert text == result["reviews"][review]["text"][start:end]
            assert quote.find_element(By.CSS_SELECTOR, ".review-number").get_attribute("textContent") == f"review {review + 1}"


def test_the_summary_is_shown(page, analysis):
    for section, result in sections(page, analysis["results"]):
        shown = section.find_element(By.CSS_SELECTOR, ".summary")
        assert shown.is_displayed()
        if result["summary"]:
            assert shown.text == " ".join(result["summary"].split())


def test_strengths_and_weaknesses_show_their_figures_against_the_rival(page, analysis):
    for section, result in sections(page, analysis["results"]):
        assert result["comparison"]["rivals"] == 1
        assert "Compared with 1 other entity" in section.text
        for kind in ("strengths", "weaknesses"):
            shown = section.find_elements(By.CSS_SELECTOR, f'.comparison-item[data-kind="{kind}"]')
            assert [e.get_attribute("data-aspect-name") for e in shown] == [item["aspect"] for item in result[kind]]
            for element, item in zip(shown, result[kind]):
                assert element.find_element(By.TAG_NAME, "span").text == " ".join(item["text"].split())


def test_an_entity_analysed_alone_shows_why_it_has_no_strengths(browser, analysis, tmp_path):
    alone = analysis["alone"]
    assert alone["comparison"]["rivals"] == 0 and alone["comparison"]["note"]
    page = open_report(browser, tmp_path, [alone], analysis["summary"], analysis["calls"])
    ((section, _),) = sections(page, [alone])
    assert section.find_element(By.CSS_SELECTOR, ".comparison-note").text == " ".join(alone["comparison"]["note"].split())
    assert not section.find_elements(By.CSS_SELECTOR, ".comparison-item")
