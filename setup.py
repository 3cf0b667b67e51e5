from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent


def _version() -> str:
    for line in (HERE / "phizer" / "__init__.py").read_text().splitlines():
        if line.startswith("__version__"):
            return line.split("=", 1)[1].strip().strip('"')
    raise RuntimeError("no __version__ in phizer/__init__.py")


setup(
    name="phizer",
    version=_version(),
    description="Dynamic image resizing proxy for predefined sizes",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="GPL-3.0-or-later",
    packages=find_packages(include=["phizer", "phizer.*"]),
    python_requires=">=3.11",
    install_requires=[
        "tornado>=6.5.8",  # httputil.set_parse_body_config for long query strings
        "pycurl>=7.45",
        # AVIF read and write. Pillow-SIMD provides the same PIL under another
        # name: `python -m phizer.engine simd` swaps it in (README, "Engines").
        # Bounded above: phizer.imaging.jpegscale sets libjpeg's 3/8 scale
        # through Pillow internals, probed at start, known to hold up to 13.x.
        "Pillow>=11.3,<14",
        "python-daemon>=3.0",
        "redis>=5.0",
        "pymemcache>=4.0",
        "prometheus-client>=0.21",  # /_metrics: registries, collectors, the text format
        "botocore>=1.34",  # bucket origins: AWS credential chain and SigV4 signer
    ],
    extras_require={
        # Pinned: the lint, format and type checks in the tests must not
        # change verdict with a release of the tools.
        "test": [
            "pytest==9.2.0",
            "pytest-timeout==2.4.0",
            "hypothesis==6.170.27",
            "ruff==0.17.6",
            "mypy==2.4.1",
            "moto[server]==5.2.5",  # a real S3 API on loopback for the bucket origin tests
        ],
    },
    entry_points={"console_scripts": ["phizer = phizer.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "License :: OSI Approved :: GNU General Public License v3 or later (GPLv3+)",
        "Operating System :: POSIX :: Linux",
        "Topic :: Internet :: WWW/HTTP :: HTTP Servers",
        "Topic :: Multimedia :: Graphics",
    ],
)
