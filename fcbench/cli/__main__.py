from fcbench.cli import main

main()
