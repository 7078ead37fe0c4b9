# frozen_string_literal: true

# Renders the benchmarks' headline figures at a glance: reads bench/results/*.json (each bench
# script rewrites its own file when it finishes: record_results in bench/support.rb) and writes
# bench/RESULTS.md, one table with a row per line (ours, the C gem, the best other, the ratio,
# the date, the machine), and bench/results.svg, a bar chart of the ratios that RESULTS.md
# embeds. A bench without a file, or a line its file lacks, shows as "not run".
#
#   rake bench_results                 # what `rake bench` ends with
#   ruby bench/results.rb [RESULTS_DIR [RESULTS_MD [RESULTS_SVG]]]
#   BENCH_RESULTS_DIR=… BENCH_RESULTS_MD=… BENCH_RESULTS_SVG=… ruby bench/results.rb
#
# A row's ratio is how many times better iodine does than the baseline it names (> 1: iodine
# is ahead), whichever way the metric goes: ours / baseline when higher is better, baseline /
# ours when lower is (memory, CPU, time).

require "json"
require "pathname"

module BenchResults
  # The areas in table order: title, how to run it, its results file (bench/results/NAME.json)
  # and the lines its script records (by `line`); `unmeasured`: lines no bench of `rake bench`
  # measures, with why.
  AREAS = [
    { title: "HTTP", run: "rake bench (bench/http.rb)", bench: "http",
      lines: ["hello (keep-alive)", "new connection per request", "idle keep-alive memory"],
      unmeasured: {
        "bodies (64 KiB GET)" => "only rake compare measures it, against another checkout of this gem",
        "uploads (1 MiB POST)" => "only rake compare measures it, against another checkout of this gem"
      } },
    { title: "WebSocket / SSE", run: "rake bench_ws", bench: "ws",
      lines: ["WS echo 32 B ×100", "WS echo 4 KiB ×10", "WS fan-out ×100", "WS fan-out ×1000", "SSE fan-out ×100",
              "WS idle memory"] },
    { title: "Pub/sub fan-out, cluster mode", run: "rake bench_cluster", bench: "cluster",
      lines: ["cluster WS fan-out ×100", "cluster WS fan-out ×1000", "cluster WS fan-out ×5000",
              "cluster SSE fan-out ×100", "cluster SSE fan-out ×1000", "cluster SSE fan-out ×5000"] },
    { title: "Static files", run: "rake bench_static", bench: "static",
      lines: ["static 4 KiB plain", "static 4 KiB gzip", "static 1 MiB plain", "static 1 MiB gzip"] },
    { title: "TLS", run: "rake bench_tls", bench: "tls",
      lines: ["TLS keep-alive", "TLS full handshake (server CPU)", "TLS resumed handshake (server CPU)",
              "TLS idle memory"] },
    { title: "HTTP/2", run: "rake bench_h2", bench: "h2",
      lines: ["HTTP/2 hello h2c (vs HTTP/1.1)", "HTTP/2 static 4 KiB over TLS", "HTTP/2 idle memory (h2c vs HTTP/1.1)"] },
    { title: "JSON", run: "rake bench_json", bench: "json",
      lines: ["JSON parse 1 MB", "JSON parse small", "JSON parse 1 MB symbols", "JSON generate 1 MB"] },
    { title: "Mustache", run: "rake bench (bench/mustache.rb)", bench: "mustache", lines: ["Mustache 1,000-item page"] },
    { title: "Iodine::Rack::Utils", run: "rake bench_utils", bench: "utils",
      lines: %w[decode_url decode_path rfc2822 rfc2109 time2str].map { |m| "Iodine::Rack::Utils.#{m}" } },
    { title: "Action Cable", run: "rake bench_cable", bench: "cable",
      lines: ["Action Cable broadcast", "Action Cable memory", "Action Cable CPU per delivery"] },
    { title: "Raw TCP echo", run: "rake bench_raw", bench: "raw",
      lines: ["raw TCP echo 64 B ×100", "raw TCP echo 16 KiB ×100"] },
    { title: "Redis pub/sub (not in rake bench)", run: "rake bench_redis", bench: "redis",
      lines: ["Redis pub/sub ×100 per server (via /pub)", "Redis pub/sub ×1000 per server (via /pub)"] },
    { title: "Redis pub/sub, publishing straight to Redis", run: "BENCH_PUBLISH=redis rake bench_redis",
      bench: "redis_direct",
      lines: ["Redis pub/sub ×100 per server (PUBLISH to Redis)", "Redis pub/sub ×1000 per server (PUBLISH to Redis)"] }
  ].freeze

  # The chart's ratio axis: log2 from 1/8 to 32; a ratio beyond is drawn to the edge, capped.
  AXIS = [0.125, 32.0].freeze
  TITLE = "iodine against the baseline of each line: times better (log scale, capped at 1/8× and 32×)"

  module_function

  # { bench name => [row Hash (string keys) …] } of every *.json file in `dir` (none: {}).
  def load(dir)
    Dir.glob(File.join(dir, "*.json")).sort.to_h do |path|
      data = JSON.parse(File.read(path))
      [data.fetch("bench", File.basename(path, ".json")), data.fetch("rows")]
    end
  end

  # The table's sections: [[area, [row …]] …], every area of AREAS (then any other bench that
  # left a file) with its rows in the area's order, the lines it lacks as { "line", "status" }
  # rows, and the lines its script recorded that the area does not list at the end.
  def sections(recorded)
    areas = AREAS + (recorded.keys - AREAS.map { |a| a[:bench] }).map do |bench|
      { title: bench, run: "bench/results/#{bench}.json", bench: bench, lines: [] }
    end
    areas.map do |area|
      rows = recorded.fetch(area[:bench], [])
      by_line = rows.to_h { |r| [r["line"], r] }
      listed = area[:lines].map { |line| by_line[line] || { "line" => line, "status" => "not run" } }
      extra = rows.reject { |r| area[:lines].include?(r["line"]) }
      unmeasured = (area[:unmeasured] || {}).map { |line, why| { "line" => line, "status" => "not measured", "note" => why } }
      [area, listed + extra + unmeasured]
    end
  end

  # A figure (never negative) as the table shows it: thousands separated, millions as "1.50M",
  # small ones with two decimals; "—" when there is none.
  def figure(value)
    return "—" unless value.is_a?(Numeric)
    return format("%.2fM", value / 1e6) if value >= 1e6
    return value.round.to_s.reverse.scan(/\d{1,3}/).join(",").reverse if value >= 1000
    return format("%.0f", value) if value >= 100
    return format("%.1f", value) if value >= 10

    format("%.2f", value)
  end

  # "1.14×" (one decimal from 10× up).
  def times(value)
    format(value >= 10 ? "%.1f×" : "%.2f×", value)
  end

  # A Markdown table cell: no pipes or line breaks of its own.
  def cell(text)
    text.to_s.gsub("|", "\\|").gsub(/\s*\n\s*/, " ")
  end

  # The Markdown cells of one row: line, ours, C gem, best other, ratio, notes, date, machine.
  def cells(row)
    line = row["better"] == "lower" ? "#{row['line']} ↓" : row["line"]
    return [line, "*#{row['status']}*", "", "", "", row["note"].to_s, "", ""] if row["status"]

    best = row["best_other_name"] ? "#{figure(row['best_other'])} (#{row['best_other_name']})" : "—"
    ratio = row["ratio"] ? "**#{times(row['ratio'])}** #{row['ratio_against']}" : "—"
    others = (row["ratios"] || {}).reject { |name, _| name == row["ratio_against"] }.map { |name, r| "#{times(r)} #{name}" }
    notes = [row["goal"] && "goal #{row['goal']}", *others, row["note"]].compact
    ours = row["ours"] ? "#{figure(row['ours'])} #{row['unit']}" : "— #{row['unit']}"
    [line, ours, figure(row["cgem"]), best, ratio, notes.join("; "), row["date"], row["machine"]]
  end

  # RESULTS.md: what the figures are, the chart (`svg_path`, relative to the file), the table.
  def markdown(sections, svg_path)
    header = ["Line", "Ours", "C gem", "Best other", "Ratio", "Notes", "Date", "Machine"]
    table = ["| #{header.join(' | ')} |", "|#{header.map { '---' }.join('|')}|"]
    sections.each do |area, rows|
      table << "| **#{cell(area[:title])}** (`#{cell(area[:run])}`) |#{' |' * (header.size - 1)}"
      rows.each { |row| table << "| #{cells(row).map { |c| cell(c) }.join(' | ')} |" }
    end
    <<~MD
      # Benchmark results

      Generated by `ruby bench/results.rb` (`rake bench_results`, the last step of `rake bench`)
      from `bench/results/*.json`, which each bench script rewrites when it finishes: do not edit
      by hand. How each bench runs, and what it needs: the README's Benchmarks section and the
      comment at the top of each script.

      - **Ratio**: how many times better iodine does than the baseline named beside it, > 1 meaning
        iodine is ahead on every line. Where lower is better (↓: memory, CPU, time) it is
        baseline ÷ iodine. Where a script runs interleaved pairs (A B, B A, …) it is the median
        of the pair ratios, so it need not equal the ratio of the medians shown.
      - **C gem**: iodine 0.7, the C gem this one replaces, running the same app with the same
        flags. **Best other**: the best of the other baselines the script runs (puma, nginx,
        puma + faye-websocket, Oj, …). Notes give the goal, the ratios against the other
        baselines and what else the script reports.
      - A 2-core machine: the server on one core, the load tool on the other. Rows dated
        "earlier run" are the figures the README gave before this file existed (see its
        history); a run of the bench replaces them.

      ![Ratios against the baseline, log scale: bars right of 1× mean iodine is ahead](#{svg_path})

      #{table.join("\n")}
    MD
  end

  # Text for SVG: XML's five special characters escaped.
  def xml(text)
    text.to_s.gsub("&", "&amp;").gsub("<", "&lt;").gsub(">", "&gt;").gsub('"', "&quot;").gsub("'", "&apos;")
  end

  # results.svg: a bar per row with a ratio, from the 1× line (log scale, capped at AXIS), the
  # area titles between the bars.
  def svg(sections)
    label_w = 320
    plot_w = 440
    value_w = 230
    row_h = 20
    top = 44
    lo, hi = AXIS.map { |v| Math.log2(v) }
    x = ->(ratio) { label_w + ((Math.log2(ratio.clamp(*AXIS)) - lo) / (hi - lo) * plot_w) }
    one = x.call(1.0)
    body = []
    y = top
    sections.each do |area, rows|
      bars = rows.select { |r| r["ratio"].is_a?(Numeric) && r["ratio"].positive? }
      next if bars.empty?

      body << %(<text class="area" x="8" y="#{y + 14}">#{xml(area[:title])}</text>)
      y += row_h
      bars.each do |row|
        ratio = row["ratio"]
        left, right = [x.call(ratio), one].minmax
        capped = ratio > AXIS[1] || ratio < AXIS[0]
        label = "#{times(ratio)} #{row['ratio_against']}#{' (capped)' if capped}"
        body << %(<text class="line" x="#{label_w - 8}" y="#{y + 14}">#{xml(row['line'])}</text>)
        body << %(<rect class="bar #{ratio >= 1 ? 'ahead' : 'behind'}" x="#{left.round(1)}" y="#{y + 4}" ) +
                %(width="#{[(right - left), 1].max.round(1)}" height="#{row_h - 8}">) +
                %(<title>#{xml("#{row['line']}: #{label}, #{row['date']}")}</title></rect>)
        body << %(<text class="value" x="#{label_w + plot_w + 8}" y="#{y + 14}">#{xml(label)}</text>)
        y += row_h
      end
    end
    height = y + 30
    ticks = (lo.to_i..hi.to_i).map do |power|
      tick_x = x.call(2.0**power).round(1)
      text = power.negative? ? "1/#{2**-power}×" : "#{2**power}×"
      %(<line class="grid" x1="#{tick_x}" y1="#{top}" x2="#{tick_x}" y2="#{y}"/>) +
        %(<text class="tick" x="#{tick_x}" y="#{y + 16}">#{text}</text>)
    end
    width = label_w + plot_w + value_w
    <<~SVG
      <?xml version="1.0" encoding="UTF-8"?>
      <svg xmlns="http://www.w3.org/2000/svg" width="#{width}" height="#{height}" viewBox="0 0 #{width} #{height}"
           font-family="sans-serif" font-size="12">
        <style>
          .title { font-size: 14px; font-weight: bold; }
          .area { font-weight: bold; fill: #333; }
          .line { text-anchor: end; fill: #222; }
          .value { fill: #222; }
          .tick { text-anchor: middle; fill: #666; font-size: 11px; }
          .grid { stroke: #ddd; stroke-width: 1; }
          .one { stroke: #000; stroke-width: 1.5; }
          .ahead { fill: #2e7d32; }
          .behind { fill: #c62828; }
        </style>
        <rect width="100%" height="100%" fill="#fff"/>
        <text class="title" x="8" y="20">#{xml(TITLE)}</text>
        <text class="tick" x="#{one.round(1)}" y="#{top - 6}">1× (even)</text>
        #{ticks.join("\n  ")}
        <line class="one" x1="#{one.round(1)}" y1="#{top}" x2="#{one.round(1)}" y2="#{y}"/>
        #{body.join("\n  ")}
      </svg>
    SVG
  end

  # Renders the *.json of `dir` into `md_path` and `svg_path`.
  def write(dir, md_path, svg_path)
    found = sections(load(dir))
    md_dir = Pathname.new(File.expand_path(File.dirname(md_path)))
    relative = Pathname.new(File.expand_path(svg_path)).relative_path_from(md_dir)
    File.write(md_path, markdown(found, relative.to_s))
    File.write(svg_path, svg(found))
    rows = found.flat_map { |_, r| r }
    puts "bench: #{md_path} and #{svg_path}: #{rows.count { |r| !r['status'] }} line(s) with figures, " \
         "#{rows.count { |r| r['status'] }} not run or not measured"
  end
end

if $PROGRAM_NAME == __FILE__
  dir = ARGV[0] || ENV.fetch("BENCH_RESULTS_DIR", File.join(__dir__, "results"))
  md = ARGV[1] || ENV.fetch("BENCH_RESULTS_MD", File.join(__dir__, "RESULTS.md"))
  svg = ARGV[2] || ENV.fetch("BENCH_RESULTS_SVG", File.join(__dir__, "results.svg"))
  BenchResults.write(dir, md, svg)
end
