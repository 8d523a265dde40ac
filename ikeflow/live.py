"""`ikeflow live IFACE`: placeholder until the live view lands."""

import click


@click.command()
@click.argument("interface")
def live(interface: str) -> None:
    """Watch IKE/ESP negotiations on INTERFACE as they happen (not yet implemented)."""
    raise click.ClickException("live capture is not implemented yet")
