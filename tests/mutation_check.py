"""Mutation check of the PPI++ tests: does each deliberately wrong PPI++ piece make at least one test fail?

    PYTHONPATH=$PWD python tests/mutation_check.py [--tests tests/test_ppi_de.py] [--only NAME ...]

For each mutation below, runs `pytest <tests> -q -p no:cacheprovider -p mutation_check` in a subprocess with
STLEARN_MUTATION=<name>; imported as that pytest plugin (`-p`, this folder on PYTHONPATH), this file patches the
perturbed function into `stlearn_nb.ppi_de` and into the frozen copy `tests/ppi_de_reference.py` alike (no test uses
the copy; it is patched so that a test relying on it later could not hide a mutation). Prints mutation -> failed tests
and exits 1 when a mutation survives (no test fails) or when the unmutated run fails. Not collected by pytest (its name
does not start with test_). Takes one to a few minutes per mutation on 2 cores; a test that runs longer than
STLEARN_MUTATION_TIMEOUT seconds (default 120) under a mutation fails (a fit that no longer converges).
"""
import os, re, subprocess, sys, time

HERE = os.path.dirname(os.path.abspath(__file__))


def _mutations():
    "name -> (description, function(module) that patches the module in place)."
    import numpy as np, torch

    def lam_scaled(m):   # lambda* x 0.8
        orig = m.ppi_glm_lambda
        m.ppi_glm_lambda = lambda stats, coord=1, clip=True: orig(stats, coord, clip) * 0.8

    def lam_no_ratio(m):   # lambda* without the (1 + n/N) factor in the denominator
        orig = m.ppi_glm_lambda
        def f(stats, coord=1, clip=True):
            lam = orig(stats, coord, clip=False) * (1 + stats['n'] / stats['N'])
            return lam.clamp(0, 1) if clip else lam
        m.ppi_glm_lambda = f

    def sandwich_drop_unlabeled(m):   # sandwich without the (n/N) lam^2 Cov(F~) term
        def f(stats, lam):
            V = stats['GG']
            if 'GF' in stats:
                l = torch.as_tensor(lam, dtype=torch.float64)[..., None, None]
                V = V - l * (stats['GF'] + stats['GF'].transpose(-1, -2)) + l**2 * stats['FF']
            Hinv = torch.linalg.inv(stats['H'])
            return Hinv @ V @ Hinv.transpose(-1, -2) / stats['n']
        m.ppi_glm_cov = f

    def sandwich_lam_not_squared(m):   # lam instead of lam^2 on Cov(F) + n/N Cov(F~)
        def f(stats, lam):
            V = stats['GG']
            if 'GF' in stats:
                l = torch.as_tensor(lam, dtype=torch.float64)[..., None, None]
                V = V - l * (stats['GF'] + stats['GF'].transpose(-1, -2)) + l * (stats['FF'] + stats['n'] / stats['N'] * stats['FuFu'])
            Hinv = torch.linalg.inv(stats['H'])
            return Hinv @ V @ Hinv.transpose(-1, -2) / stats['n']
        m.ppi_glm_cov = f

    def nb_score_poisson(m):   # NB score with its weight phi / (phi + m) dropped (the Poisson score m - x)
        orig = m.glm_terms
        def f(counts, design, theta, offset=None, family='poisson', inv_dispersion=None, with_loss=True):
            loss, score, curv = orig(counts, design, theta, offset, family, inv_dispersion, with_loss)
            if family == 'nb':
                phi = torch.as_tensor(inv_dispersion, dtype=score.dtype)[..., None, :]
                score = score * (phi + _mean(design, theta, offset)) / phi   # = m - x
            return loss, score, curv
        m.glm_terms = f

    def nb_score_sign(m):   # NB score with the sign of (m - x) flipped inside the PPI++ pieces (loss and curvature kept)
        orig = m.glm_terms
        def f(counts, design, theta, offset=None, family='poisson', inv_dispersion=None, with_loss=True):
            loss, score, curv = orig(counts, design, theta, offset, family, inv_dispersion, with_loss)
            return loss, (-score if family == 'nb' else score), curv
        m.glm_terms = f

    def dispersion_scaled(m):   # NB2 inverse dispersion x 1.5 (the explicit estimator and the one inside the fits)
        for name in ('estimate_inv_dispersion', '_auto_dispersion'):
            if hasattr(m, name):
                orig = getattr(m, name)
                setattr(m, name, (lambda o: lambda *a, **k: o(*a, **k) * 1.5)(orig))

    def dispersion_no_poisson_term(m):   # moments without the Poisson part: sum m^2 / sum (x - m)^2
        orig = m.estimate_inv_dispersion
        def f(counts, design, theta, offset=None, bounds=(1e-2, 1e6)):
            lin = torch.einsum('...ck,...gk->...cg', design, theta) + (0 if offset is None else offset[..., None])
            mu = torch.exp(lin)
            return ((mu**2).sum(-2) / ((counts - mu)**2).sum(-2).clamp_min(1e-12)).clamp(*bounds)
        m.estimate_inv_dispersion = f
        if hasattr(m, '_auto_dispersion'):
            auto = m._auto_dispersion
            def g(p, bounds=(1e-2, 1e6)):   # the same error in the fits' path: add back sum x to the excess
                phi = auto(p, bounds).numpy()
                s = p['sums_unl'] if 'N' in p else p['sums'].get('unweighted', {'V1': p['sums']['Q1'], 'U1': p['sums']['P1'], 'U2': p['sums']['P2']})
                mm_excess = s['V1'].sum(-1)                       # sum x
                theta = m._closed_form({'K': p['K'], 'n': p['n'], 'pairs': False, 'sums': {'Q1': s['V1'], 'P1': s['U1']}}, 0.)
                r = np.exp(np.einsum('kp,...gp->...gk', m._design_matrix(p['K']), torch.nan_to_num(theta).numpy()))
                mm = (r * r * s['U2'][..., None, :]).sum(-1)
                return torch.from_numpy(1 / (1 / phi + mm_excess / mm)).clamp(*bounds)
            m._auto_dispersion = g

    def _mean(design, theta, offset):
        lin = torch.einsum('...ck,...gk->...cg', design, theta)
        return torch.exp(lin + offset[..., None]) if offset is not None else torch.exp(lin)

    return {
        'lambda x 0.8': ('lambda*', lam_scaled),
        'lambda without 1+n/N': ('lambda*', lam_no_ratio),
        'sandwich without n/N lam^2 Cov(F~)': ('sandwich', sandwich_drop_unlabeled),
        'sandwich lam for lam^2': ('sandwich', sandwich_lam_not_squared),
        'NB score: phi/(phi+m) dropped': ('NB score', nb_score_poisson),
        'NB score: sign flipped': ('NB score', nb_score_sign),
        'dispersion x 1.5': ('dispersion', dispersion_scaled),
        'dispersion: Poisson term dropped': ('dispersion', dispersion_no_poisson_term),
    }


def _apply(name):
    import stlearn_nb.ppi_de as lib
    modules = [lib]
    sys.path.insert(0, HERE)
    try:
        import ppi_de_reference as copy; modules.append(copy)
    except ImportError: pass
    patch = _mutations()[name][1]
    for m in modules: patch(m)


# imported by pytest as a plugin (-p mutation_check): apply the mutation named in the environment
if __name__ != '__main__' and os.environ.get('STLEARN_MUTATION'):
    _apply(os.environ['STLEARN_MUTATION'])
    import pytest, signal

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_call(item):
        "A mutation that makes a fit iterate without end fails its test after STLEARN_MUTATION_TIMEOUT s (default 120)."
        def stop(*_): raise TimeoutError(f"mutated run exceeded {limit} s")
        limit = int(os.environ.get('STLEARN_MUTATION_TIMEOUT', '120'))
        old = signal.signal(signal.SIGALRM, stop); signal.alarm(limit)
        try: yield
        finally: signal.alarm(0); signal.signal(signal.SIGALRM, old)


def main(argv=None):
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--tests', nargs='+', default=[os.path.join(HERE, 'test_ppi_de.py')])
    ap.add_argument('--only', nargs='*', default=None, help='mutation names to run (default: all)')
    ap.add_argument('-k', default=None, help='pytest -k expression (default: all tests of --tests)')
    args = ap.parse_args(argv)
    names = [None] + [n for n in _mutations() if args.only is None or n in args.only]
    env0 = {**os.environ, 'PYTHONPATH': os.pathsep.join([HERE, os.environ.get('PYTHONPATH', ''), os.path.dirname(HERE)])}
    rows, bad = [], False
    for name in names:
        env = {**env0, 'STLEARN_MUTATION': name or ''}
        cmd = [sys.executable, '-m', 'pytest', *args.tests, '-q', '-p', 'no:cacheprovider', '-p', 'mutation_check', '-n', '0'] + (['-k', args.k] if args.k else [])
        t = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True, env=env)
        failed = sorted(set(re.findall(r'^FAILED \S+::(\S+)', r.stdout, re.M)))
        summary = (r.stdout.strip().splitlines() or ['(no output)'])[-1]
        rows.append((name or '(none: library as is)', failed, summary, time.perf_counter() - t))
        bad |= (not failed) if name else bool(failed or r.returncode)
        print(f"{rows[-1][0]:40s} {len(failed):3d} failed  ({summary}; {rows[-1][3]:.0f} s)", flush=True)
    print('\n| mutation | piece | tests failed |\n|---|---|---|')
    for (label, failed, _, _), name in zip(rows, names):
        piece = _mutations()[name][0] if name else '-'
        print(f"| {label} | {piece} | {len(failed)}: {', '.join(failed) if failed else 'none'} |")
    return 1 if bad else 0


if __name__ == '__main__':
    sys.exit(main())
