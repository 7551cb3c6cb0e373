from vlconvert.cli.root import run_command

run_command()
