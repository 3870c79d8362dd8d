# Echo throughput against connection count, one line per server (bench/run.lua calls this):
#   gnuplot -e "datafile='X.dat'; outfile='X.png'; subtitle='...'" bench/plot.gp
# The data file's columns: connections, then messages/s for moonwire, Bun and Node ws.
if (!exists("datafile")) datafile = "results.dat"
if (!exists("outfile")) outfile = "results.png"
if (!exists("subtitle")) subtitle = ""

set terminal pngcairo size 900,560 font "sans,11"
set output outfile
set title "Echo throughput against connections (16 in flight x 32 B text)\n{/*0.8 ".subtitle."}"
set logscale x 10
set xlabel "connections"
set ylabel "messages per second"
set format y "%.1s%c"
set yrange [0:*]
set xrange [0.7:1500]
set grid xtics ytics mxtics
set key top left box opaque
set datafile missing "NaN"
plot datafile using 1:2 title "moonwire (Lua)" with linespoints lw 2 pt 7 lc rgb "#1b6ac9", \
     datafile using 1:3 title "Bun" with linespoints lw 2 pt 5 lc rgb "#e08a1e", \
     datafile using 1:4 title "Node ws" with linespoints lw 2 pt 9 lc rgb "#3c9a3c"
