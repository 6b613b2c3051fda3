"""tools/web_demo.py in a real browser: headless Chromium (Debian's chromium and chromium-driver,
tools/install_chromium.sh) driven by Selenium against the app started on a free local port.

Set CASCADE_CLIP_WEB_SCREENSHOT=path.png to keep the screenshot of the page with a result
(docs/web_demo.png comes from there).
"""
import json
import os
import os.path as osp
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import mmcv
import numpy as np
import pytest

from cascade_clip.apis import init_model, segment_image
from tests.test_tools.test_web_demo import write_photo, write_tiny_files

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CHROMIUM, DRIVER = shutil.which('chromium'), shutil.which('chromedriver')
pytest.importorskip('gradio')
webdriver = pytest.importorskip('selenium.webdriver')
pytestmark = pytest.mark.skipif(CHROMIUM is None or DRIVER is None,
                                reason='needs chromium and chromedriver: bash tools/install_chromium.sh')
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

NAMES_TYPED = 'red flat, green stripes\n"blue, dotted"'
NAMES = ['red flat', 'green stripes', 'blue, dotted']


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.fixture(scope='module')
def app(tmp_path_factory):
    """(url, config, checkpoint, photo): the app on a free 127.0.0.1 port, stopped afterwards."""
    d = str(tmp_path_factory.mktemp('web_app'))
    cfg, ckpt = write_tiny_files(d)
    photo = write_photo(osp.join(d, 'photo.png'), h=48, w=80)
    port = free_port()
    env = dict(os.environ, PYTHONWARNINGS='ignore', GRADIO_TEMP_DIR=osp.join(d, 'gradio'),
               PYTHONPATH=ROOT, OMP_NUM_THREADS='1')
    log = open(osp.join(d, 'app.log'), 'w')
    proc = subprocess.Popen([sys.executable, 'tools/web_demo.py', '--config', cfg, '--checkpoint', ckpt,
                             '--device', 'cpu', '--port', str(port)], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    url = f'http://127.0.0.1:{port}/'
    try:
        deadline = time.time() + 180
        while True:
            if proc.poll() is not None:
                raise AssertionError(f'the app exited ({proc.returncode}):\n'
                                     + open(osp.join(d, 'app.log')).read()[-3000:])
            try:
                if urllib.request.urlopen(url, timeout=2).status == 200:
                    break
            except OSError:
                pass
            if time.time() > deadline:
                raise AssertionError('the app did not answer within 180 s')
            time.sleep(0.5)
        yield url, cfg, ckpt, photo
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope='module')
def browser(tmp_path_factory):
    """(driver, download folder): headless Chromium with a fresh profile, no outside traffic."""
    from selenium.webdriver.chrome.service import Service
    d = tmp_path_factory.mktemp('chromium')
    downloads = str(d / 'downloads')
    os.makedirs(downloads)
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ('--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
                 '--disable-background-networking', '--disable-component-update', '--disable-sync',
                 '--disable-dev-shm-usage', f'--user-data-dir={d / "profile"}', '--window-size=1280,900'):
        opts.add_argument(flag)
    opts.add_experimental_option('prefs', {'download.default_directory': downloads,
                                           'download.prompt_for_download': False})
    opts.set_capability('goog:loggingPrefs', {'performance': 'ALL'})
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    try:
        yield driver, downloads
    finally:
        driver.quit()


def wait_status(driver, prefix, timeout=120):
    """The status text once the request is answered; it must start with ``prefix``."""
    text = WebDriverWait(driver, timeout).until(
        lambda dr: (lambda t: t if t.startswith(('Done:', 'Error:')) else False)(
            dr.find_element(By.ID, 'status').text))
    assert text.startswith(prefix), text
    return text


def type_names(driver, text):
    box = driver.find_element(By.CSS_SELECTOR, '#names textarea')
    box.send_keys(Keys.CONTROL, 'a')
    box.send_keys(Keys.DELETE)  # as a user does: the page sees the edit (clear() it would not)
    if text:
        box.send_keys(text)


def request_hosts(driver):
    hosts = set()
    for entry in driver.get_log('performance'):
        msg = json.loads(entry['message'])['message']
        if msg['method'] in ('Network.requestWillBeSent', 'Network.webSocketCreated'):
            url = msg['params'].get('request', msg['params']).get('url', '')
            if url.startswith(('http:', 'https:', 'ws:', 'wss:')):
                hosts.add(url.split('/')[2])
    return hosts


def test_segment_in_the_browser(app, browser):
    url, cfg, ckpt, photo = app
    driver, downloads = browser
    driver.get(url)
    WebDriverWait(driver, 60).until(lambda dr: dr.find_elements(By.CSS_SELECTOR, '#image input[type=file]'))
    driver.find_element(By.CSS_SELECTOR, '#image input[type=file]').send_keys(photo)
    WebDriverWait(driver, 30).until(lambda dr: dr.find_elements(By.CSS_SELECTOR, '#image img'))
    type_names(driver, NAMES_TYPED)
    driver.find_element(By.ID, 'segment').click()
    status = wait_status(driver, 'Done:')
    # the reference: the API on its own model, the same image file and names
    want, _ = segment_image(init_model(cfg, ckpt, class_names=NAMES), photo)
    present = [k for k in np.argsort(-np.bincount(want.ravel(), minlength=3), kind='stable')
               if (want == k).any()]
    assert status.startswith(f'Done: {len(present)} of 3 classes present')
    # the overlay is shown (a decoded image from the app, larger than the photo: x4 + legend)
    WebDriverWait(driver, 30).until(lambda dr: dr.execute_script(
        "const i = document.querySelector('#overlay img'); return i && i.complete && i.naturalWidth > 0"))
    width = driver.execute_script("return document.querySelector('#overlay img').naturalWidth")
    assert width > 80 * 4
    # the table: one row per class present, by decreasing area, with its share of the pixels
    table = driver.find_element(By.ID, 'table').text.split('\n')
    for k in present:
        share = f'{100 * (want == k).mean():.2f}'.rstrip('0').rstrip('.')  # as the page prints 73.7
        cells = [NAMES[k], str(k), str(int((want == k).sum())), share]
        i = table.index(NAMES[k])
        assert table[i:i + 4] == cells, table
    assert [table.index(NAMES[k]) for k in present] == sorted(table.index(NAMES[k]) for k in present)
    shot = os.environ.get('CASCADE_CLIP_WEB_SCREENSHOT')
    if shot:
        driver.save_screenshot(shot)
    # the label map, downloaded through the page, is the API's
    link = next(a for a in driver.find_elements(By.CSS_SELECTOR, '#downloads a')
                if a.get_attribute('href').endswith('photo_labels.png'))
    link.click()
    path = osp.join(downloads, 'photo_labels.png')
    WebDriverWait(driver, 30).until(lambda dr: osp.isfile(path) and not any(
        f.endswith('.crdownload') for f in os.listdir(downloads)))
    got = mmcv.imread(path, flag='unchanged')
    assert got.dtype == np.uint8 and np.array_equal(got, want)
    # nothing but the app was contacted
    assert request_hosts(driver) <= {url.split('/')[2]}


def test_empty_class_list_message_in_the_browser(app, browser):
    url, _, _, photo = app
    driver, _ = browser
    driver.get(url)
    WebDriverWait(driver, 60).until(lambda dr: dr.find_elements(By.CSS_SELECTOR, '#image input[type=file]'))
    driver.find_element(By.CSS_SELECTOR, '#image input[type=file]').send_keys(photo)
    WebDriverWait(driver, 30).until(lambda dr: dr.find_elements(By.CSS_SELECTOR, '#image img'))
    type_names(driver, '')
    driver.find_element(By.ID, 'segment').click()
    status = wait_status(driver, 'Error:')
    assert status == ('Error: the class list is empty: type at least one class name, separated by commas '
                      'or one per line')
    assert not driver.find_elements(By.CSS_SELECTOR, '#overlay img')
    assert request_hosts(driver) <= {url.split('/')[2]}
