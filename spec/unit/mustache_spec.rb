# frozen_string_literal: true

require "spec_helper"
require "iodine"
require "json"

SPEC_DIR = ENV.fetch("MUSTACHE_SPEC_DIR", File.expand_path("../../../shared/data/mustache-spec", __dir__))
SPEC_FILES = %w[comments delimiters interpolation inverted partials sections].freeze

RSpec.describe Iodine::Mustache do
  describe "the official Mustache spec" do
    if Dir.exist?(SPEC_DIR)
      SPEC_FILES.each do |file|
        JSON.parse(File.read(File.join(SPEC_DIR, "#{file}.json")))["tests"].each do |test|
          it "#{file}: #{test['name']}" do
            Dir.mktmpdir do |dir|
              (test["partials"] || {}).each { |name, text| File.write(File.join(dir, name), text) }
              view = described_class.new(File.join(dir, "main.mustache"), test["template"])
              expect(view.render(test["data"])).to eq(test["expected"]), test["desc"]
            end
          end
        end
      end
    else
      it "is skipped: the spec folder #{SPEC_DIR} is absent (set MUSTACHE_SPEC_DIR)" do
        skip "mustache spec folder not found at #{SPEC_DIR}"
      end
    end
  end

  it "looks up Symbol keys, String keys, then methods; walks up the stack" do
    user = Struct.new(:name).new("Ann")
    view = described_class.new(nil, "{{a}} {{b}} {{#u}}{{name}} {{a}}{{/u}} {{size}}")
    expect(view.render(a: 1, "b" => 2, u: user)).to eq("1 2 Ann 1 3")
  end

  it "resolves dotted names step by step, through Hashes and methods" do
    expect(described_class.render(template: "{{a.b}}", data: { "a.b" => "whole", a: { b: "split" } })).to eq("split")
    expect(described_class.render(template: "{{user.name.size}}", data: { user: Struct.new(:name).new("Ann") })).to eq("3")
  end

  it "escapes & < > \" ' and nothing else" do
    expect(described_class.render(template: "{{x}}|{{{x}}}", data: { x: %(<a href="x">&'/ .=) }))
      .to eq(%(&lt;a href=&quot;x&quot;&gt;&amp;&#39;/ .=|<a href="x">&'/ .=))
  end

  it "passes the raw section text to a callable and writes its result unparsed" do
    view = described_class.new(nil, "{{#wrap}}Hi {{name}}{{/wrap}}")
    expect(view.render(wrap: ->(text) { "<b>#{text}</b>" }, name: "x")).to eq("<b>Hi {{name}}</b>")
  end

  it "reads templates and partials from files, with or without .mustache" do
    Dir.mktmpdir do |dir|
      File.write(File.join(dir, "page.mustache"), "[{{> item}}|{{> other.txt}}|{{> missing}}]")
      File.write(File.join(dir, "item.mustache"), "{{name}}")
      File.write(File.join(dir, "other.txt"), "o")
      expect(described_class.new(File.join(dir, "page.mustache")).render(name: "n")).to eq("[n|o|]")
      expect(described_class.render(File.join(dir, "page.mustache"), { name: "m" })).to eq("[m|o|]")
      expect(described_class.new(filename: File.join(dir, "page.mustache")).render(name: 1)).to eq("[1|o|]")
    end
  end

  it "does not read outside the template folder through partial names" do
    Dir.mktmpdir do |dir|
      inner = File.join(dir, "views")
      Dir.mkdir(inner)
      File.write(File.join(dir, "secret"), "SECRET")
      File.write(File.join(inner, "page.mustache"), "[{{> ../secret}}{{> /etc/hostname}}]")
      expect(described_class.new(File.join(inner, "page.mustache")).render({})).to eq("[]")
    end
  end

  it "bounds recursive partials" do
    Dir.mktmpdir do |dir|
      File.write(File.join(dir, "r.mustache"), "x{{> r}}")
      out = Timeout.timeout(10) { described_class.new(File.join(dir, "r.mustache")).render({}) }
      expect(out).to start_with("xxx")
      expect(out.size).to be < 10_000
    end
  end

  it "raises errors that name the line" do
    expect { described_class.new(nil, "a\n{{#s}}\nb") }.to raise_error(RuntimeError, /line 2/)
    expect { described_class.new(nil, "a\nb {{name") }.to raise_error(RuntimeError, /line 2/)
    expect { described_class.new(nil, "{{#a}}\n\n{{/b}}") }.to raise_error(RuntimeError, /line 3/)
  end

  it "raises LoadError for a missing template file and ArgumentError without any source" do
    expect { described_class.new("/nonexistent/x.mustache") }.to raise_error(LoadError)
    expect { described_class.new }.to raise_error(ArgumentError)
    expect { described_class.new(nil, nil) }.to raise_error(ArgumentError, "need either template contents or file name.")
    expect { described_class.new(1) }.to raise_error(TypeError)
  end

  it "lets exceptions from data methods reach the caller" do
    bad = Object.new
    def bad.boom = raise(IOError, "from data")
    expect { described_class.render(template: "{{boom}}", data: bad) }.to raise_error(IOError, "from data")
  end

  it "survives GC pressure during a render" do
    items = Array.new(40) { |i| { name: "item #{i}", tags: Array.new(3) { |j| Struct.new(:label).new("t#{j}") } } }
    view = described_class.new(nil, "{{#items}}{{name}}:{{#tags}}{{label}},{{/tags}};{{/items}}")
    GC.stress = true
    out = view.render(items: items)
    GC.stress = false
    expect(out).to start_with("item 0:t0,t1,t2,;item 1:")
    expect(out.scan(";").size).to eq(40)
  ensure
    GC.stress = false
  end
end
