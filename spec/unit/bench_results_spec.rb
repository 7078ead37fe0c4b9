# frozen_string_literal: true

require "fileutils"
require "json"
require "open3"
require "rbconfig"
require "rexml/document"
require "tmpdir"

# bench/results.rb (the benchmarks' results files rendered as one table and a chart of the
# ratios) and the recording side in bench/support.rb, on fixture files in a temp folder. No
# server starts.
RSpec.describe "bench/results.rb" do
  let(:bench) { File.expand_path("../../bench", __dir__) }
  let(:renderer) { File.join(bench, "results.rb") }

  around do |example|
    Dir.mktmpdir("bench-results") do |dir|
      @dir = dir
      example.run
    end
  end

  # A results row as record_results writes it.
  def row(line, ratio:, better: "higher", against: "C gem", **more)
    { "line" => line, "ours" => nil, "unit" => "req/s", "better" => better, "cgem" => nil, "best_other" => nil,
      "best_other_name" => nil, "ratio" => ratio, "ratio_against" => against,
      "ratios" => ratio ? { against => ratio } : {}, "date" => "2026-12-08", "machine" => "2 cores, Linux 6.1" }
      .merge(more.transform_keys(&:to_s))
  end

  # Writes { bench => rows } as results files in a folder of the temp dir, runs the renderer
  # on it (`env`, else the arguments, name the paths) and returns [Markdown, SVG, output].
  def render(files, env: false, md: "out/RESULTS.md", svg: "out/results.svg")
    input = File.join(@dir, "results")
    Dir.mkdir(input)
    files.each { |name, rows| File.write(File.join(input, "#{name}.json"), JSON.generate({ "bench" => name, "rows" => rows })) }
    md, svg = [md, svg].map { |p| File.join(@dir, p) }
    [md, svg].each { |p| FileUtils.mkdir_p(File.dirname(p)) }
    command = if env
                [{ "BENCH_RESULTS_DIR" => input, "BENCH_RESULTS_MD" => md, "BENCH_RESULTS_SVG" => svg }, RbConfig.ruby, renderer]
              else
                [RbConfig.ruby, renderer, input, md, svg]
              end
    out, status = Open3.capture2e(*command)
    expect(status).to be_success, out
    [File.read(md), File.read(svg), out]
  end

  # The table's rows: { first cell => cells }.
  def table(markdown)
    markdown.lines.grep(/\A\| /).drop(1).to_h do |line|
      cells = line.strip.delete_prefix("|").delete_suffix("|").split(/(?<!\\)\|/, -1).map(&:strip)
      [cells.first, cells]
    end
  end

  # The SVG's bars (rect elements of class "bar …") and the x of its 1× line.
  def bars(svg)
    doc = REXML::Document.new(svg)
    rects = REXML::XPath.match(doc, "//*[local-name()='rect']").select { |r| r.attributes["class"].to_s.start_with?("bar") }
    one = REXML::XPath.first(doc, "//*[local-name()='line'][@class='one']")
    [rects, one.attributes["x1"].to_f]
  end

  let(:http) do
    [row("hello (keep-alive)", ratio: 1.14, ours: 43_500, cgem: 38_200, best_other: 29_800, best_other_name: "puma",
                               goal: "≥ 1.10× C gem", ratios: { "C gem" => 1.14 }),
     row("idle keep-alive memory", ratio: 2.26, better: "lower", ours: 2.85, cgem: 6.45, unit: "MiB per 1,000 conns"),
     row("a line <not> listed & new", ratio: 0.5, against: "nginx", best_other_name: "nginx")]
  end

  it "gives each recorded line its figures, ratio, date and machine" do
    markdown, = render({ "http" => http })
    hello = table(markdown).fetch("hello (keep-alive)")
    expect(hello).to eq(["hello (keep-alive)", "43,500 req/s", "38,200", "29,800 (puma)", "**1.14×** C gem",
                         "goal ≥ 1.10× C gem", "2026-12-08", "2 cores, Linux 6.1"])
    # A line the script recorded that the catalogue lacks still shows, after the listed ones.
    names = table(markdown).keys
    expect(names.index("a line <not> listed & new")).to be > names.index("idle keep-alive memory ↓")
  end

  it "shows a bench without a file, and a line its file lacks, as not run" do
    markdown, = render({ "http" => http })
    rows = table(markdown)
    expect(rows.fetch("new connection per request")[1]).to eq("*not run*")
    expect(rows.fetch("WS echo 32 B ×100")[1..4]).to eq(["*not run*", "", "", ""])
    expect(rows.fetch("bodies (64 KiB GET)")[1]).to eq("*not measured*")
    expect(rows.keys).to include("**WebSocket / SSE** (`rake bench_ws`)", "JSON parse 1 MB", "Action Cable broadcast")
  end

  it "states every ratio as times better, marking lower-is-better lines" do
    markdown, svg, = render({ "http" => http })
    expect(markdown).to include("> 1 meaning", "baseline ÷ iodine")
    idle = table(markdown).fetch("idle keep-alive memory ↓")
    expect(idle[1..4]).to eq(["2.85 MiB per 1,000 conns", "6.45", "—", "**2.26×** C gem"])

    # Ratios over 1 grow right of the 1× line, under 1 left of it.
    rects, one = bars(svg)
    ahead, behind = rects.partition { |r| r.attributes["class"] == "bar ahead" }
    expect(ahead.size).to eq(2)
    expect(behind.size).to eq(1)
    expect(ahead.map { |r| r.attributes["x"].to_f }).to all(be_within(0.1).of(one))
    behind = behind.first
    expect(behind.attributes["x"].to_f + behind.attributes["width"].to_f).to be_within(0.2).of(one)
    expect(behind.attributes["x"].to_f).to be < one - 10
  end

  it "records ratios from bench/support.rb so that > 1 means ours is better, both ways" do
    out, status = Open3.capture2e({ "BENCH_RESULTS_DIR" => @dir }, RbConfig.ruby, "-e", <<~RUBY)
      require #{File.join(bench, 'support').inspect}
      runs = { "iodine" => [{ rate: 110.0, mib: 2.0 }, { rate: 120.0, mib: 3.0 }, { rate: 130.0, mib: 2.0 }],
               "iodine-C" => [{ rate: 100.0, mib: 6.0 }, { rate: 100.0, mib: 6.0 }, { rate: 100.0, mib: 6.0 }],
               "faye" => [{ rate: 10.0, mib: 9.0 }, { rate: 20.0, mib: 9.0 }, { rate: 10.0, mib: 9.0 }] }
      record_results("fixture", [
        result_row("rate", runs, :rate, unit: "req/s", cgem: "iodine-C", others: { "faye" => "puma + faye" }),
        result_row("memory", runs, :mib, unit: "MiB", better: "lower", cgem: "iodine-C", others: { "faye" => "puma + faye" },
                   note: [nil, "kept", false]),
        result_row("no baseline", { "iodine" => [1.0] }, nil, unit: "s", cgem: "iodine-C")
      ])
    RUBY
    expect(status).to be_success, out
    data = JSON.parse(File.read(File.join(@dir, "fixture.json")))
    rate, memory, alone = data.fetch("rows")
    expect(rate).to include("ours" => 120.0, "cgem" => 100.0, "best_other" => 10.0, "best_other_name" => "puma + faye",
                            "ratio" => 1.2, "ratio_against" => "C gem", "better" => "higher")
    expect(rate["ratios"]).to eq({ "C gem" => 1.2, "puma + faye" => 11.0 })
    expect(memory).to include("ours" => 2.0, "ratio" => 3.0, "better" => "lower", "note" => "kept")
    expect(memory["ratios"]).to eq({ "C gem" => 3.0, "puma + faye" => 4.5 })
    expect(alone).to include("ratio" => nil, "cgem" => nil, "best_other" => nil)
    expect(rate["date"]).to match(/\A\d{4}-\d\d-\d\d\z/)
    expect(rate["machine"]).to match(/\A\d+ cores, /)
  end

  it "writes well-formed SVG with one bar per line that has a ratio, and embeds it" do
    files = { "http" => http + [row("new connection per request", ratio: nil)],
              "ws" => [row("WS echo 32 B ×100", ratio: 0.96), row("WS fan-out ×100", ratio: 300.0)] }
    markdown, svg, = render(files, env: true, md: "out/RESULTS.md", svg: "out/chart/results.svg")
    rects, = bars(svg)
    expect(rects.size).to eq(5)
    expect(svg).to include("a line &lt;not&gt; listed &amp; new", "300.0× C gem (capped)")
    expect(markdown).to include("](chart/results.svg)")
    expect(table(markdown).fetch("new connection per request")[4]).to eq("—")
  end
end
