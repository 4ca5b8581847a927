"""`smartecg federated`: the simulation, `federated server` and `federated client` (argparse and handlers)."""
from __future__ import annotations

__all__ = ["add_federated_parser", "feature_sets_option"]

_DEFAULT_ADDRESS = "127.0.0.1:8088"


def add_federated_parser(commands, tracking_help: str, positive_int) -> None:
    federated = commands.add_parser(
        "federated", allow_abbrev=False,  # else `client --site` is taken for the simulation's --sites
        help="train across sites with Flower: model updates travel, pages never do",
        description="With --sites: a simulation on this machine (a Flower server and one client per site on "
                    "loopback). `federated server` and `federated client` run the same federation across machines.")
    _site_options(federated, required=False)
    _training_options(federated, positive_int)
    federated.add_argument("--in-process", action="store_true",
                           help="the same rounds as plain calls, without Flower's network (faster; same numbers)")
    _tracking_options(federated, tracking_help)
    federated.set_defaults(handler=_simulate, federated_parser=federated)
    roles = federated.add_subparsers(dest="role", metavar="{server,client}")

    server = roles.add_parser("server", help="the coordinating centre: waits for the sites, runs the rounds, "
                                             "keeps the model")
    server.add_argument("--address", default=_DEFAULT_ADDRESS,
                        help=f"HOST:PORT to listen on (default {_DEFAULT_ADDRESS}; 0.0.0.0:PORT for other machines, "
                             "behind TLS or a VPN: see docs/federated.md)")
    server.add_argument("--min-sites", type=positive_int, default=2, help="sites to wait for before round 1 (default 2)")
    server.add_argument("--holdout", default=None, metavar="DIR",
                        help="labelled pages (<Class>/) held at the centre: the model is scored on them, registered "
                             "and compared with the champion (without: logged to the run only)")
    _training_options(server, positive_int)
    _tracking_options(server, tracking_help)
    server.set_defaults(handler=_server)

    client = roles.add_parser("client", help="one site: reads its pages here and sends model updates only")
    client.add_argument("--site", required=True, metavar="DIR", help="this site's labelled pages (<Class>/...)")
    client.add_argument("--name", default=None, help="the site's name in the server's figures (default: DIR's name)")
    client.add_argument("--server", required=True, metavar="HOST:PORT", help="the federation server's address")
    client.add_argument("--features", default=None, help="feature sets, as the server's --features (default: "
                                                         "the default experiment's)")
    client.add_argument("--seed", type=int, default=0, help="seed of this site's saved split (default 0)")
    _model_option(client)
    client.set_defaults(handler=_client)


def _site_options(parser, *, required: bool) -> None:
    parser.add_argument("--sites", nargs="+", default=None, metavar="DIR", required=required,
                        help="one dataset folder per site (<Class>/ inside), or one folder of site folders "
                             "(DIR/<site>/<Class>/)")
    parser.add_argument("--site-csv", default=None, metavar="FILE",
                        help="with one dataset folder in --sites: a CSV of path,site naming each page's site")


def _model_option(parser) -> None:
    parser.add_argument("--model", choices=("head", "cnn"), default="head",
                        help="what the sites train: head (default), a softmax head over page features, or cnn, a "
                             "small Keras CNN over the page's lead mosaic (FedAvg; server and sites must agree)")


def _training_options(parser, positive_int) -> None:
    _model_option(parser)
    parser.add_argument("--rounds", type=positive_int, default=20, help="training rounds (default 20)")
    parser.add_argument("--budget", default=None, help="wall time for the rounds: 90s, 30m (default: no limit; "
                                                       "the first training round always runs)")
    parser.add_argument("--features", default=None,
                        help="comma-separated feature sets (default: the default experiment's)")
    parser.add_argument("--hidden", type=int, default=None,
                        help="hidden units of the head: 0 is softmax regression (default), e.g. 64 for an MLP")
    parser.add_argument("--mu", type=float, default=None,
                        help="the head's FedProx proximal weight (default 0.1: sites whose pages differ drift apart "
                             "under plain FedAvg, which is --mu 0)")
    parser.add_argument("--local-epochs", type=positive_int, default=None,
                        help="passes over a site's pages per round (default 5 for the head, 2 for a network)")
    parser.add_argument("--seed", type=int, default=0)


def _tracking_options(parser, tracking_help: str) -> None:
    parser.add_argument("--experiment", default=None, help="MLflow experiment (default: smartecg-federated)")
    parser.add_argument("--name", default="smartecg", help="registered model name (default: smartecg)")
    parser.add_argument("--tracking-uri", default=None, help=tracking_help)


def _settings(args):
    from automl.budget import parse_duration
    from automl.experiment import load_spec
    from automl.federated.head import HeadSpec
    from automl.federated.network import NetworkSpec
    from automl.federated.run import EXPERIMENT, FederationSettings

    spec = load_spec(None)
    features = feature_sets_option(args.features, spec.features)
    model, mu, hidden = args.model, getattr(args, "mu", None), getattr(args, "hidden", None)
    epochs = getattr(args, "local_epochs", None)
    if (mu or 0.0) < 0 or (hidden or 0) < 0:
        raise ValueError("--mu and --hidden must not be negative")
    if model != "head" and (mu or hidden):
        raise ValueError(f"--mu and --hidden are the head's; --model {model} trains with plain FedAvg: drop them")
    head = HeadSpec(hidden=hidden or 0, epochs=epochs or 5, mu=0.1 if mu is None else mu)
    network = NetworkSpec(family=model if model != "head" else "cnn", epochs=epochs or NetworkSpec.epochs)
    budget = getattr(args, "budget", None)
    return FederationSettings(rounds=getattr(args, "rounds", 20), head=head, model=model, network=network,
                              features=features, seed=args.seed,
                              budget_seconds=parse_duration(budget) if budget else None,
                              experiment=getattr(args, "experiment", None) or EXPERIMENT,
                              registry_name=getattr(args, "name", "smartecg") if args.role != "client" else "smartecg",
                              tracking_uri=getattr(args, "tracking_uri", None), uncertain_below=spec.uncertain_below)


def feature_sets_option(text: str | None, default) -> tuple[str, ...]:
    """``--features a,b``, checked against the known sets; the default experiment's when not given."""
    from features.handcrafted import FEATURE_SETS

    sets = tuple(s.strip() for s in text.split(",") if s.strip()) if text else tuple(default)
    unknown = [s for s in sets if s not in FEATURE_SETS]
    if not sets or unknown:
        raise ValueError(f"--features {text!r}: unknown set(s) {', '.join(unknown) or '(none)'}; "
                         f"choose from {', '.join(FEATURE_SETS)}")
    return sets


def _simulate(args) -> int:
    from automl.federated.run import simulate_federation
    from features.sites import scan_sites

    if not args.sites:
        args.federated_parser.error("give --sites DIR... for a simulation, or use `federated server` / `federated client`")
    settings = _settings(args)  # bad options said before any page is read
    sites = scan_sites(args.sites, site_csv=args.site_csv)
    if len(sites) < 2:
        raise ValueError(f"a federation needs at least 2 sites, found {len(sites)}: {', '.join(sites)}")
    outcome = simulate_federation(sites, settings, transport="in-process" if args.in_process else "flower")
    return _report(outcome)


def _server(args) -> int:
    from automl.federated.run import serve_federation
    from features.dataset import scan

    settings = _settings(args)
    holdout = scan(args.holdout, progress=False) if args.holdout else None
    outcome = serve_federation(settings, args.address, min_sites=args.min_sites, holdout=holdout)
    return _report(outcome)


def _client(args) -> int:
    from pathlib import Path

    from automl.federated.run import join_federation
    from features.dataset import scan

    settings = _settings(args)
    manifest = scan(args.site, progress=False)
    join_federation(args.name or Path(args.site).resolve().name, manifest, args.server, settings)
    return 0


def _report(outcome) -> int:
    print(f"federated run: {outcome.run_id}")
    return 0
