from vlconvert.cli.root import main

main()
