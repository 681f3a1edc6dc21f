"""benchmarks/walk_home.py counts the home's walk right on a small tree whose walk is known by hand."""

from __future__ import annotations

from pathlib import Path

from benchmarks.walk_home import walk_home

TREE = {
    "flows/flows/pipeline.py": '''
from prefect import flow
from flows.prefect_env import settings_for
from flows.flows.train import train_flow
from models import stages

def helper(n):
    return n

@flow(name="pipeline")
def pipeline_flow(source, home=None, epochs=3):
    settings = settings_for(home)
    train_flow(home=str(settings.home), epochs=epochs)
    stages.encode(stages.EncodeConfig(home=settings.home))
    helper(epochs)
''',
    "flows/flows/train.py": '''
from flows.prefect_env import settings_for
from models.stages import train

def train_flow(home=None, epochs=3):
    settings = settings_for(home)
    return train(settings.layout, epochs)
''',
    "flows/prefect_env.py": '''
def settings_for(home) -> "Settings":
    return Settings(home)
''',
    "models/stages.py": '''
from ingestion.home_layout import HomeLayout
from ingestion.reader import load

class EncodeConfig:
    pass

def encode(config):
    layout = HomeLayout.at(config.home)
    return read(layout.manifest_path)

def train(layout, epochs):
    data = load(layout)
    return fit(data, epochs)

def fit(data, epochs):
    return data

def read(path):
    return path
''',
    "ingestion/home_layout.py": '''
class HomeLayout:
    @classmethod
    def at(cls, root):
        return cls()
''',
    "ingestion/reader.py": '''
def load(layout):
    from models.stages import read
    return read(layout.manifest_path)
''',
}


def test_walk_counts_places_modules_entered_twice_and_climbs(tmp_path: Path) -> None:
    for rel, text in TREE.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    figures = walk_home(tmp_path)
    # pipeline_flow, settings_for, train_flow, encode, train, HomeLayout.at, read, load; not helper, not fit
    # (the data ``load`` returns carries no home)
    assert figures.places == 8 and figures.calls == 9
    assert figures.modules == ("flows.flows.pipeline", "flows.flows.train", "flows.prefect_env",
                               "ingestion.home_layout", "ingestion.reader", "models.stages")
    assert figures.entered_twice == {"flows.prefect_env": 2, "models.stages": 3}
    assert figures.returns == 8  # every edge but encode -> read crosses a module boundary
    assert figures.climbs == (("ingestion.reader.load", "models.stages.read"),)
    assert figures.settings_reads == 2 and figures.study_builds == 0
