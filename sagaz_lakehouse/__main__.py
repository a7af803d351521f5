from sagaz_lakehouse.cli import main

main()
