# frozen_string_literal: true

# Template benchmark: a realistic page (1,000 items, nested sections, escaping) rendered by
# Iodine::Mustache, Debian's `mustache` gem and ERB, in one run. Prints ms per render and the
# ratios. `ruby -Ilib bench/mustache.rb` (rake bench runs it).

$LOAD_PATH.unshift(File.expand_path("../lib", __dir__))
require "iodine"
require "erb"
require "benchmark"
require_relative "support"

ITEMS = Array.new(1000) do |i|
  { name: "Item <#{i}> & \"friends\"", price: format("%.2f", i * 1.25), in_stock: i.even?,
    tags: Array.new(3) { |j| { label: "tag-#{j}'s" } } }
end
DATA = { title: "Catalogue & <Prices>", items: ITEMS, empty: [] }.freeze

MUSTACHE = <<~M
  <html><head><title>{{title}}</title></head><body>
  <h1>{{title}}</h1>
  <ul>
  {{#items}}
    <li class="{{#in_stock}}stock{{/in_stock}}{{^in_stock}}out{{/in_stock}}">
      <b>{{name}}</b> {{price}}
      {{#tags}}<span>{{label}}</span>{{/tags}}
    </li>
  {{/items}}
  {{^empty}}<p>nothing else</p>{{/empty}}
  </ul></body></html>
M

ERB_SOURCE = <<~E
  <html><head><title><%= h data[:title] %></title></head><body>
  <h1><%= h data[:title] %></h1>
  <ul>
  <% data[:items].each do |item| %>
    <li class="<%= item[:in_stock] ? 'stock' : 'out' %>">
      <b><%= h item[:name] %></b> <%= h item[:price] %>
      <% item[:tags].each do |t| %><span><%= h t[:label] %></span><% end %>
    </li>
  <% end %>
  <% if data[:empty].empty? %><p>nothing else</p><% end %>
  </ul></body></html>
E

# ERB with the same escaping the others do.
class ErbView
  include ERB::Util
  def initialize(source)
    @erb = ERB.new(source)
    @erb.def_method(ErbView, "render(data)")
  end
end

def time_per_render(runs)
  yield # warm-up
  best = Float::INFINITY
  3.times do
    t = Benchmark.realtime { runs.times { yield } }
    best = [best, t / runs].min
  end
  best * 1000
end

iodine_view = Iodine::Mustache.new(nil, MUSTACHE)
results = { "Iodine::Mustache" => time_per_render(50) { iodine_view.render(DATA) } }
begin
  require "mustache"
  gem_view = Class.new(Mustache) { self.template = MUSTACHE }
  version = Gem.loaded_specs["mustache"]&.version || "?"
  same = gem_view.render(DATA) == iodine_view.render(DATA)
  warn "WARNING: Iodine::Mustache and the mustache gem render different text" unless same
  results["mustache gem #{version}"] = time_per_render(5) { gem_view.render(DATA) }
rescue LoadError
  warn "mustache gem not installed (apt-get install ruby-mustache); skipped"
end
erb_view = ErbView.new(ERB_SOURCE)
results["ERB (compiled)"] = time_per_render(20) { erb_view.render(DATA) }

puts
puts format("%-26s %12s", "1,000-item page", "ms/render")
results.each { |name, ms| puts format("%-26s %12.3f", name, ms) }
base = results["Iodine::Mustache"]
puts
results.each do |name, ms|
  next if name == "Iodine::Mustache"

  puts format("Iodine::Mustache vs %-22s %6.1fx faster", name, ms / base)
end
puts "(target: >= 10x the mustache gem)"

# The headline figure, for bench/RESULTS.md: ms per render against the mustache gem (the goal's
# baseline) and ERB.
gem_name = results.keys.find { |name| name.start_with?("mustache gem") }
others = { gem_name => "mustache gem", "ERB (compiled)" => "ERB" }.reject { |name, _| name.nil? }
record_results("mustache", [result_row("Mustache 1,000-item page", results.transform_values { |ms| [ms] }, nil,
                                       unit: "ms per render", better: "lower", ours: "Iodine::Mustache",
                                       others: others, against: "mustache gem", goal: "≥ 10× the mustache gem")])
