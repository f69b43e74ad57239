"""The offline HTML atlas: built for a few models, checked as files and in headless Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
from html.parser import HTMLParser
from io import BytesIO
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

import cnnatlas
from cnnatlas.atlas import MARKER, build_atlas
from cnnatlas.cli import main
from cnnatlas.errors import InputError

MODELS = ["lenet5", "resnet18", "alexnet_2012"]  # sequential (MNIST), multi-path, two towers
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("atlas") / "site"
    built = build_atlas(out, MODELS, jobs=1)
    assert built.pages == 2 + len(MODELS) + (1 if (out / "questions.html").exists() else 0)
    return out


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.targets: list[tuple[str, str]] = []  # (tag, URL)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for key, value in attrs:
            if key in ("href", "src", "xlink:href") and value:
                self.targets.append((tag, value))


def _json_block(html: str, element_id: str) -> dict:
    match = re.search(rf'<script type="application/json" id="{element_id}">(.*?)</script>', html, re.S)
    assert match, element_id
    return json.loads(match.group(1))


def test_every_internal_link_resolves_and_nothing_is_remote(site: Path) -> None:
    pages = [site / "index.html", site / "formulas.html", *sorted((site / "models").glob("*.html"))]
    assert {p.stem for p in (site / "models").glob("*.html")} == set(MODELS)
    for page in pages:
        parser = _Links()
        parser.feed(page.read_text())
        for tag, target in parser.targets:
            url = urlparse(target)
            if url.scheme in ("http", "https"):
                assert tag == "a", f"{page.name}: <{tag}> would load {target}"  # paper links are only links
                continue
            assert not url.scheme and not url.netloc, f"{page.name}: {target}"
            if url.path:
                assert (page.parent / unquote(url.path)).resolve().is_file(), f"{page.name}: broken link {target}"
        # scripts and styles are the package's own files, next to the pages
        assert not re.search(r'<(script|link)[^>]+(src|href)="https?:', page.read_text())


def test_bubble_data_is_one_point_per_imagenet_model_with_a_result(site: Path) -> None:
    bubble = _json_block((site / "index.html").read_text(), "bubble-data")
    points = {p["model"]: p for p in bubble["points"]}
    assert set(points) == {"resnet18", "alexnet_2012"}  # lenet5 is an MNIST network
    analysis = cnnatlas.analyze("alexnet_2012")
    assert points["alexnet_2012"]["macs"] == analysis.totals["macs"]
    assert points["alexnet_2012"]["params"] == analysis.totals["params"]
    # Krizhevsky et al. 2012 Table 2: 40.7 % top-1 error for one CNN, 10 crops (drawn hollow)
    assert points["alexnet_2012"]["top1"] == pytest.approx(59.3) and points["alexnet_2012"]["hollow"]


def test_model_page_carries_its_analysis(site: Path) -> None:
    html = (site / "models" / "alexnet_2012.html").read_text()
    charts = _json_block(html, "layers-data")["charts"]
    params = next(c for c in charts if c["id"] == "bars-params")
    assert [r["name"] for r in params["rows"]][:3] == ["conv1", "pool1", "conv2"]
    assert "96% of parameters are in fully connected layers" in html
    assert "cnnatlas train alexnet_2012 --recipe alexnet2012" in html
    # the picture when Graphviz is installed, its DOT source otherwise
    assert ("<svg" in html) if shutil.which("dot") else ("digraph" in html)
    rf = _json_block(html, "rf-data")
    assert rf["rows"][0] == {"name": "conv1", "rf": 11, "jump": 4}  # an 11×11 stride-4 filter


def test_bad_input_leaves_nothing_behind(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(InputError, match="unknown model"):
        build_atlas(tmp_path / "a", ["lenet5", "no_such_net"])
    occupied = tmp_path / "mine"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("keep me")
    assert main(["atlas", "--out", str(occupied), "--models", "lenet5"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cnnatlas: error:") and err.count("\n") == 1 and "not empty" in err
    assert main(["atlas", "--out", str(tmp_path / "missing" / "site"), "--models", "lenet5"]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]
    assert [p.name for p in occupied.iterdir()] == ["notes.txt"]


def test_rebuilding_replaces_an_earlier_atlas(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cnnatlas.atlas import records

    monkeypatch.setattr(records, "winners_record", lambda: [])  # not under test here; saves five analyses
    out = tmp_path / "site"
    build_atlas(out, ["lenet5"], jobs=1)
    build_atlas(out, ["lenet5_modern"], jobs=1)
    assert (out / MARKER).exists() and [p.name for p in (out / "models").iterdir()] == ["lenet5_modern.html"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site"]  # no temporary or old copy left


def test_a_user_source_runs_once_in_the_building_process(tmp_path: Path) -> None:
    runs = tmp_path / "runs.txt"
    user = tmp_path / "counted.py"
    user.write_text(
        "import os\n"
        "from torch import nn\n"
        f"with open({str(runs)!r}, 'a') as f:\n"
        "    f.write(f'{os.getpid()}\\n')\n"
        "class Net(nn.Sequential):\n"
        "    def __init__(self):\n"
        "        super().__init__(nn.Conv2d(3, 4, 3), nn.Flatten())\n"
    )
    build = build_atlas(
        tmp_path / "site", ["lenet5", f"{user}:Net"], jobs=2, render_diagrams=False, input_size=(3, 8, 8)
    )
    assert build.models == ["lenet5", f"{user}:Net"]
    # checked up front, then analysed from that one resolution: the file's code ran once, here
    assert runs.read_text().split() == [str(os.getpid())]
    assert (tmp_path / "site" / "models" / "counted-Net.html").is_file()


def test_atlas_of_torchvision_and_user_models(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from cnnatlas.atlas import records

    monkeypatch.setattr(records, "winners_record", lambda: [])  # not under test here
    user = tmp_path / "my_net.py"
    user.write_text(
        "from torch import nn\n"
        "class TinyNet(nn.Sequential):\n"
        "    def __init__(self):\n"
        "        super().__init__(\n"
        "            nn.Conv2d(1, 4, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 12 * 12, 10)\n"
        "        )\n"
    )
    out = tmp_path / "site"
    sources = ["lenet5", "torchvision:squeezenet1_1", f"{user}:TinyNet"]
    assert main(["atlas", "--out", str(out), "--models", *sources, "--input", "1x28x28", "--jobs", "1"]) == 0
    pages = {p.stem: p.read_text() for p in (out / "models").glob("*.html")}
    user_page = records.page_name(f"{user}:TinyNet")
    assert set(pages) == {"lenet5", "torchvision-squeezenet1_1", "my_net-TinyNet"} and user_page == "my_net-TinyNet"
    index = (out / "index.html").read_text()
    for page in pages:
        assert f'href="models/{page}.html"' in index
    # torchvision's SqueezeNet 1.1 at its 224×224 input (torchvision metadata: 0.35 GFLOPS, 1,235,496 params);
    # the user's net at --input 1×28×28: conv 4·25·24² = 57,600 MACs and 4·25 + 4 parameters,
    # FC 576·10 = 5,760 MACs and 5,770 parameters
    layers = _json_block(pages["torchvision-squeezenet1_1"], "layers-data")
    assert layers["charts"] and "1,235,496" in pages["torchvision-squeezenet1_1"]
    assert all(f">{n}<" in pages[user_page] for n in ("57,600", "5,760", "5,874")) and "1×28×28" in pages[user_page]
    assert "Paper:" not in pages[user_page] and "Paper:" in pages["lenet5"]
    assert f"cnnatlas summary {user}:TinyNet --input 1x28x28" in pages[user_page]
    # a bad source is one error line and leaves nothing behind
    assert main(["atlas", "--out", str(tmp_path / "bad"), "--models", f"{user}:NoSuchNet"]) == 2
    assert capsys.readouterr().err.count("\n") == 1 and not (tmp_path / "bad").exists()


# -- in a real browser ----------------------------------------------------------------------------
def _browser_or_skip():
    if CHROMIUM is None:
        pytest.skip("Chromium is missing: install the Debian package 'chromium'")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the Python package 'playwright' is missing (pip install playwright; its browsers are not needed)")
    return sync_playwright


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory):
    sync_playwright = _browser_or_skip()
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS
        )
        yield context
        context.close()


def _open(browser, url: str):
    page = browser.new_page()
    problems: list[str] = []
    requests: list[str] = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("request", lambda request: requests.append(request.url))
    page.goto(url)
    page.wait_for_selector("html[data-ready]")
    return page, problems, requests


def _not_blank(png: bytes) -> bool:
    from matplotlib.image import imread

    pixels = imread(BytesIO(png), format="png")
    return pixels.std() > 0.02 and len({tuple(p) for p in pixels.reshape(-1, pixels.shape[-1])[::97]}) > 8


def test_index_in_chromium(site: Path, browser) -> None:
    page, problems, requests = _open(browser, (site / "index.html").as_uri())
    assert page.locator("#bubble .point").count() == 2  # one per model with a published top-1
    assert page.locator("#winners .bar").count() == 5
    assert page.locator("#model-table tbody tr").count() == len(MODELS)
    page.locator('#bubble .point[data-model="resnet18"]').hover()
    tip = page.locator("#tooltip").inner_text()
    assert "resnet18" in tip and "parameters" in tip and "torchvision" in tip
    boxes = page.eval_on_selector_all(
        "#bubble text.label",
        "els => els.map(e => { const b = e.getBoundingClientRect(); return [b.x, b.y, b.right, b.bottom]; })",
    )
    assert len(boxes) == 2 and not any(
        a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3] for i, a in enumerate(boxes) for b in boxes[i + 1 :]
    )
    page.fill("input.filter", "alex")
    assert page.locator("#model-table tbody tr:visible").count() == 1
    assert _not_blank(page.screenshot(full_page=True))
    page.locator('#bubble .point[data-model="alexnet_2012"]').click()
    page.wait_for_selector("html[data-ready]")
    assert page.url.endswith("/models/alexnet_2012.html")
    assert problems == []
    assert all(url.startswith("file://") for url in requests), requests
    page.close()


@pytest.mark.parametrize("model", ["resnet18", "lenet5"])  # multi-path, sequential
def test_model_page_in_chromium(site: Path, browser, model: str) -> None:
    if shutil.which("dot") is None:
        pytest.skip("Graphviz's dot is missing: install the Debian package 'graphviz'")
    page, problems, requests = _open(browser, (site / "models" / f"{model}.html").as_uri())
    assert page.locator(".diagram svg g.node").count() == len(cnnatlas.analyze(model).layers) + 2  # + input, output
    for chart in ("activations", "params", "macs"):
        assert page.locator(f"#bars-{chart} rect.bar").count() > 0
    assert page.locator("#rf .rf-line").count() == 1
    first = page.locator("#layer-table tbody tr").first.inner_text()
    page.locator("#layer-table th", has_text="params").click()
    page.locator("#layer-table th", has_text="params").click()  # descending: the largest layer first
    largest = page.locator("#layer-table tbody tr").first.inner_text()
    assert first and largest and largest != first or model == "lenet5"
    assert _not_blank(page.screenshot())
    assert problems == []
    assert all(url.startswith("file://") for url in requests), requests
    page.close()
