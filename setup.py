from setuptools import find_packages, setup


def read_requirements(path):
    with open(path) as f:
        return [line.strip() for line in f if line.strip() and not line.startswith(('#', '-'))]


def read_version():
    ns = {}
    with open('cascade_clip/version.py') as f:
        exec(f.read(), ns)
    return ns['__version__']


setup(
    name='cascade_clip',
    version=read_version(),
    description='Cascade-CLIP (ICML 2024) zero-shot semantic segmentation as an MMSegmentation 0.x plugin',
    packages=find_packages(include=['cascade_clip', 'cascade_clip.*']),
    package_data={'cascade_clip.clip': ['bpe_simple_vocab_16e6.txt.gz', 'LICENSE_CLIP'],
                  'cascade_clip.datasets': ['names/*']},
    include_package_data=True,
    python_requires='>=3.8',
    # torch, torchvision and mmcv-full (built with ops) are installed by tools/setup_env.sh
    install_requires=read_requirements('requirements/runtime.txt'),
    # the web demo (tools/web_demo.py): pip install -e ".[web]"
    extras_require={'web': read_requirements('requirements/web.txt')},
    zip_safe=False,
)
