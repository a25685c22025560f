# Busy outside LAMMPS's time steps and deaf to SIGTERM and SIGINT for a minute (in.deaf
# runs it).
trap '' TERM INT
sleep 60
