import os, pytest
os.environ.setdefault('MPLBACKEND', 'Agg')
from stlearn_nb.data import shared_data_dir

@pytest.fixture
def shared():
    "Return a function name -> Path that skips the test when ../shared/data/<name> is absent."
    def get(name):
        p = shared_data_dir(name)
        if p is None: pytest.skip(f"../shared/data/{name} not present on this machine")
        return p
    return get
