# frozen_string_literal: true

require "tmpdir"
require "spec_helper"
require "iodine"

RSpec.describe Iodine do
  it "has the C gem's version" do
    expect(Iodine::VERSION).to eq("0.7.59")
    expect(Iodine::VERSION).to be_frozen
  end

  it "is not running and is the master before start" do
    expect(Iodine.running?).to be(false)
    expect(Iodine.master?).to be(true)
    expect(Iodine.worker?).to be(false)
  end

  it "has mutable DEFAULT_SETTINGS with a String port, and DEFAULT_HTTP_ARGS is the same Hash" do
    expect(Iodine::DEFAULT_SETTINGS).to be_a(Hash)
    expect(Iodine::DEFAULT_SETTINGS[:port]).to be_a(String)
    expect(Iodine::DEFAULT_HTTP_ARGS).to equal(Iodine::DEFAULT_SETTINGS)
  end

  describe ".threads= and .workers=" do
    after do
      Iodine.threads = 0
      Iodine.workers = 0
    end

    it "return what was set, 0 when never set" do
      expect(Iodine.threads).to eq(0)
      expect(Iodine.threads = 4).to eq(4)
      expect(Iodine.threads).to eq(4)
      Iodine.workers = -2
      expect(Iodine.workers).to eq(-2)
    end

    it "validate type and range" do
      expect { Iodine.threads = "4" }.to raise_error(TypeError)
      expect { Iodine.threads = 4096 }.to raise_error(RangeError)
      expect { Iodine.workers = 1.5 }.to raise_error(TypeError)
      expect { Iodine.workers = 512 }.to raise_error(RangeError)
    end
  end

  it "verbosity= returns Iodine and verbosity reads it back" do
    old = Iodine.verbosity
    expect(old).to eq(4)
    expect(Iodine.verbosity = 2).to eq(2) # assignment syntax always returns the argument
    expect(Iodine.send(:verbosity=, 3)).to equal(Iodine)
    expect(Iodine.verbosity).to eq(3)
    expect { Iodine.verbosity = "x" }.to raise_error(TypeError)
  ensure
    Iodine.verbosity = old
  end

  describe ".listen" do
    it "needs exactly one Hash" do
      expect { Iodine.listen }.to raise_error(ArgumentError)
      expect { Iodine.listen(3000) }.to raise_error(TypeError)
    end

    it "needs a handler" do
      expect { Iodine.listen(service: :http, port: 0, address: "127.0.0.1") }.to raise_error(ArgumentError, "a :handler is required.")
    end

    it "raises when the socket can't be bound" do
      blocker = TCPServer.new("127.0.0.1", 0)
      port = blocker.addr[1]
      Iodine.verbosity = 0 # the error is also logged; keep the spec output clean
      expect { Iodine.listen(service: :http, port: port, address: "127.0.0.1", handler: ->(_) {}) }
        .to raise_error(RuntimeError, "Couldn't open listening socket.")
    ensure
      Iodine.verbosity = 4
      blocker&.close
    end

    it "returns the block used as the handler" do
      blk = proc { |_env| [200, {}, []] }
      # Port 0 means a Unix socket at the address: a path in a temporary folder, not the cwd.
      Dir.mktmpdir do |dir|
        expect(Iodine.listen(service: :http, port: 0, address: File.join(dir, "sock"), &blk)).to equal(blk)
      end
    end
  end

  describe Iodine::Base::Runner do
    it "computes threads and workers like the C gem" do
      expect(described_class.concurrency(0, 0, 8)).to eq([8, 7])
      expect(described_class.concurrency(0, 0, 2)).to eq([2, 2])
      expect(described_class.concurrency(-2, 1, 8)).to eq([4, 1])
      expect(described_class.concurrency(1, 0, 16)).to eq([1, 1])
      expect(described_class.concurrency(0, 0, 32)).to eq([8, 7])
    end

    # §1.5, negative values: cores / abs(n) (the cores not capped at 8: facil.io caps only the
    # all-auto case); a 0 counterpart takes the other's raw value negated; an auto-derived side
    # loses one when the product reaches the cores (cores > 3); then at least 1 of each.
    it "computes negative threads or workers as cores / n, like the C gem (section 1.5)" do
      {
        [-1, 0, 8] => [7, 1], [0, -1, 8] => [1, 7], [-2, 0, 8] => [3, 2], [0, -2, 8] => [2, 3],
        [-1, -1, 8] => [7, 7], [-2, -2, 8] => [3, 3], [4, -2, 8] => [4, 3], [-2, 3, 8] => [3, 3],
        [-1, 0, 16] => [15, 1], [-1, 0, 4] => [3, 1], [-1, 0, 2] => [2, 1], [0, -1, 2] => [1, 2],
        [-1, -1, 2] => [2, 2], [-1, 0, 1] => [1, 1], [-8, -8, 4] => [1, 1]
      }.each do |args, expected|
        got = described_class.concurrency(*args)
        expect(got).to eq(expected), "concurrency(#{args.join(', ')}): expected #{expected}, got #{got}"
      end
    end

    # facil.io's fio_expected_concurrency saves the worker count before taking one off it
    # (`tmp = *processes`) and tests the thread side against that product: when both are
    # negative, both sides can lose one.
    it "with both negative, tests the thread side against the product before the workers lost one (section 1.5)" do
      aggregate_failures do
        { [-3, -2, 6] => [1, 2], [-2, -4, 8] => [3, 1], [-1, -8, 8] => [7, 1] }.each do |args, expected|
          got = described_class.concurrency(*args)
          expect(got).to eq(expected), "concurrency(#{args.join(', ')}): expected #{expected}, got #{got}"
        end
      end
    end
  end

  describe Iodine::Base::CLI do
    it "scans flag forms" do
      values, positional = described_class.scan(%w[-p3000 -b=0.0.0.0 --threads 4 -v app.ru])
      expect(values).to eq(port: 3000, address: "0.0.0.0", threads: 4, log: true)
      expect(positional).to eq(["app.ru"])
    end

    it "takes the longest matching flag" do
      values, = described_class.scan(%w[-maxbd10 -maxhd 64])
      expect(values).to eq(max_body: 10, max_headers: 64)
    end

    it "raises on unknown flags" do
      expect { described_class.scan(%w[--nope]) }.to raise_error(Iodine::Base::CLI::Error, /unknown argument --nope/)
    end
  end

  it "registers the Rack handler" do
    require "rack"
    require "rack/handler"
    expect(Rack::Handler.get("iodine")).to equal(Iodine::Rack)
    expect(Iodine::Rack::IODINE_RACK_LOADED).to be(true)
  end

  describe Iodine::Base::Warmup do
    it "survives an app that raises or throws on its GET / (the server still starts), and closes the body" do
      closed = []
      body = Object.new
      body.define_singleton_method(:each) { |&_| nil }
      body.define_singleton_method(:close) { closed << :closed }
      expect(described_class.request(->(_env) { raise "boom" })).to eq(RuntimeError)
      expect(described_class.request(->(_env) { throw :nowhere })).to eq(UncaughtThrowError)
      expect(described_class.request(->(env) { [env["PATH_INFO"] == "/" ? 204 : 500, {}, body] })).to eq(204)
      expect(closed).to eq([:closed])
    end

    it "loads the app's autoloads (nested ones too) and leaves Ruby's and the gems' alone" do
      require "rack"
      require "rack/handler"
      Dir.mktmpdir do |dir|
        File.write(File.join(dir, "warm_probe_inner.rb"), "module WarmProbe; module Inner; end; end")
        File.write(File.join(dir, "warm_probe.rb"), <<~RUBY)
          module WarmProbe
            autoload :Inner, #{File.join(dir, 'warm_probe_inner.rb').inspect}
          end
        RUBY
        Object.autoload(:WarmProbe, File.join(dir, "warm_probe.rb"))
        pending = %i[Thin FastCGI].select { |name| Rack::Handler.autoload?(name, false) }
        features = $LOADED_FEATURES.size
        loaded = described_class.autoloads
        # Counted before any expectation runs (a matcher may load RSpec's own files).
        added = $LOADED_FEATURES.drop(features)
        expect(Object.autoload?(:WarmProbe)).to be_nil
        expect(WarmProbe.autoload?(:Inner, false)).to be_nil
        expect(loaded).to eq(2)
        # Rack's optional handlers (thin, fcgi: not installed) stay as they were.
        expect(pending.select { |name| Rack::Handler.autoload?(name, false) }).to eq(pending)
        expect(added.size).to eq(2), added.inspect
      end
    end
  end
end
