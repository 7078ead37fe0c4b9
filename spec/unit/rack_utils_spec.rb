# frozen_string_literal: true

require "open3"
require "spec_helper"
require "iodine"
require "rack"
require "rack/utils"

# Iodine::Rack::Utils (§9), Iodine.patch_rack and Iodine.listen2http (§1.4).
RSpec.describe Iodine::Rack::Utils do
  utils = described_class
  # 784111777 is the RFC's example date.
  nov94 = 784_111_777

  # Random query/path-like strings: letters, `+`, valid escapes of any byte, UTF-8, and (when
  # `malformed`) broken escapes.
  def random_string(rng, malformed:)
    pieces = [
      -> { ("a".."z").to_a.sample(random: rng) },
      -> { "+" },
      -> { format("%%%02X", rng.rand(256)) },
      -> { format("%%%02x", rng.rand(256)) },
      -> { ["é", "日本", "😀", " ", "/", "=", "&"].sample(random: rng) }
    ]
    pieces += [-> { ["%", "%4", "%zz", "%%", "%g1", "%+1"].sample(random: rng) }] if malformed
    Array.new(rng.rand(0..24)) { pieces.sample(random: rng).call }.join
  end

  def malformed?(str)
    /%(?!\h\h)/.match?(str)
  end

  def in_subprocess(code)
    Open3.capture3(RbConfig.ruby, "-I#{ROOT}/lib", "-e", "require 'iodine'\n#{code}")
  end

  describe ".decode_url" do
    it "decodes known values" do
      expect(utils.decode_url("a+b%20c%2Bd")).to eq("a b c+d")
      expect(utils.decode_url("%C3%A9t%c3%a9")).to eq("été")
      expect(utils.decode_url("")).to eq("")
      expect(utils.decode_url("%FF").b).to eq("\xFF".b)
    end

    it "returns a new UTF-8 String and leaves the argument alone" do
      source = +"a%41"
      result = utils.decode_url(source)
      expect(result).to eq("aA")
      expect(result.encoding).to eq(Encoding::UTF_8)
      expect(source).to eq("a%41")
      expect(utils.decode_url("%41".b).encoding).to eq(Encoding::UTF_8)
    end

    it "raises RuntimeError on malformed escapes" do
      ["%", "%4", "%zz", "%%", "a%4g", "%41%"].each do |bad|
        expect { utils.decode_url(bad) }.to raise_error(RuntimeError, "Malformed URL string - couldn't decode.")
      end
    end

    it "raises TypeError unless given a String" do
      [nil, 1, :sym, ["%41"]].each do |bad|
        expect { utils.decode_url(bad) }.to raise_error(TypeError)
      end
    end

    it "equals Rack::Utils.unescape on many random strings (and both reject the malformed ones)" do
      rng = Random.new(12)
      2000.times do
        str = random_string(rng, malformed: true)
        if malformed?(str)
          expect { Rack::Utils.unescape(str) }.to raise_error(ArgumentError)
          expect { utils.decode_url(str) }.to raise_error(RuntimeError)
        else
          ours = utils.decode_url(str)
          theirs = Rack::Utils.unescape(str)
          expect(ours.b).to eq(theirs.b), str
          expect(ours.encoding).to eq(theirs.encoding)
        end
      end
    end
  end

  describe ".decode_url!" do
    it "replaces the contents, keeps the encoding and returns the String" do
      str = +"a+%41%C3%A9"
      expect(utils.decode_url!(str)).to equal(str)
      expect(str).to eq("a Aé")
      binary = "%FF+".b
      utils.decode_url!(binary)
      expect(binary).to eq("\xFF ".b)
      expect(binary.encoding).to eq(Encoding::BINARY)
    end

    it "leaves the String as it was on a malformed escape" do
      str = +"a+%4"
      expect { utils.decode_url!(str) }.to raise_error(RuntimeError, "Malformed URL string - couldn't decode.")
      expect(str).to eq("a+%4")
    end

    it "refuses frozen Strings and non-Strings" do
      expect { utils.decode_url!("%41".freeze) }.to raise_error(FrozenError)
      expect { utils.decode_url!(41) }.to raise_error(TypeError)
    end
  end

  describe ".decode_path and .decode_path!" do
    it "decodes escapes but keeps `+`" do
      expect(utils.decode_path("/a+b/%2Fc%20d")).to eq("/a+b//c d")
      expect(utils.decode_path("%41").encoding).to eq(Encoding::UTF_8)
      str = +"/x+%79"
      expect(utils.decode_path!(str)).to equal(str)
      expect(str).to eq("/x+y")
    end

    it "raises RuntimeError on malformed escapes and TypeError on non-Strings" do
      ["%", "%4", "%zz", "%%"].each do |bad|
        expect { utils.decode_path(bad) }.to raise_error(RuntimeError, "Malformed URL string - couldn't decode.")
        expect { utils.decode_path!(+bad) }.to raise_error(RuntimeError)
      end
      expect { utils.decode_path(nil) }.to raise_error(TypeError)
      expect { utils.decode_path!(:a) }.to raise_error(TypeError)
    end

    it "equals Rack::Utils.unescape_path on many random valid strings" do
      rng = Random.new(34)
      2000.times do
        str = random_string(rng, malformed: false)
        ours = utils.decode_path(str)
        expect(ours.b).to eq(Rack::Utils.unescape_path(str).b), str
        expect(utils.decode_path!(str.dup).b).to eq(ours.b)
      end
    end
  end

  describe "dates" do
    it "formats known timestamps" do
      expect(utils.time2str(nov94)).to eq("Sun, 06 Nov 1994 08:49:37 GMT")
      expect(utils.rfc2109(nov94)).to eq("Sun, 06-Nov-1994 08:49:37 GMT")
      expect(utils.rfc2822(nov94)).to eq("Sun, 06 Nov 1994 08:49:37 -0000")
      expect(utils.time2str(951_782_400)).to eq("Tue, 29 Feb 2000 00:00:00 GMT")
      expect(utils.time2str(4_107_542_400)).to eq("Mon, 01 Mar 2100 00:00:00 GMT")
      expect(utils.time2str(-1)).to eq("Wed, 31 Dec 1969 23:59:59 GMT")
    end

    it "takes Integers and anything with to_i (Time, Float, String)" do
      expect(utils.time2str(Time.at(nov94))).to eq("Sun, 06 Nov 1994 08:49:37 GMT")
      expect(utils.rfc2822(Time.at(nov94).localtime("+05:00"))).to eq("Sun, 06 Nov 1994 08:49:37 -0000")
      expect(utils.rfc2109(nov94 + 0.9)).to eq("Sun, 06-Nov-1994 08:49:37 GMT")
      expect(utils.time2str(nov94.to_s)).to eq("Sun, 06 Nov 1994 08:49:37 GMT")
    end

    it "writes now for no argument, nil and 0" do
      [utils.time2str, utils.time2str(nil), utils.time2str(0), utils.rfc2109(0), utils.rfc2822(nil)].each do |date|
        parsed = Time.parse(date.tr("-", " "))
        expect((parsed - Time.now).abs).to be < 5
      end
    end

    it "raises TypeError without to_i and ArgumentError on extra arguments" do
      expect { utils.time2str(Object.new) }.to raise_error(TypeError)
      expect { utils.rfc2822([]) }.to raise_error(TypeError)
      expect { utils.time2str(1, 2) }.to raise_error(ArgumentError)
      expect { utils.rfc2109 }.to raise_error(ArgumentError)
    end

    it "equals Time#httpdate and Rack::Utils.rfc2822/rfc2109 (in UTC) on random times, 1600 to 2600" do
      rng = Random.new(56)
      2000.times do
        t = rng.rand(-11_676_096_000..19_880_899_200)
        utc = Time.at(t).utc
        expect(utils.time2str(t)).to eq(utc.httpdate)
        expect(utils.rfc2822(t)).to eq(Rack::Utils.rfc2822(utc))
        expect(utils.rfc2109(t)).to eq(Rack::Utils.rfc2109(utc))
      end
    end
  end

  describe "Iodine.patch_rack" do
    # Patching here would change Rack::Utils for every later spec: run it in a subprocess.
    it "replaces Rack::Utils' helpers with equal results for valid input" do
      code = <<~RUBY
        require "rack"
        require "json"
        inputs = ["a+b%20c", "%C3%A9t%C3%A9", "/p+%2Fq", "", "plain", "%FF%00"]
        times = [Time.at(#{nov94}).utc, Time.at(0).utc, Time.at(-1).utc, Time.at(4_107_542_400).utc]
        run = lambda do
          inputs.map { |s| [Rack::Utils.unescape(s).b, Rack::Utils.unescape(s).encoding.to_s,
                            Rack::Utils.unescape(s, Encoding::ISO_8859_1).encoding.to_s,
                            Rack::Utils.unescape(s, "BINARY").encoding.to_s,
                            Rack::Utils.unescape_path(s).b, Rack::Utils.unescape_path(s.b).encoding.to_s] } +
            times.map { |t| [Rack::Utils.rfc2822(t), Rack::Utils.rfc2109(t)] }
        end
        included = Class.new { include Rack::Utils; def go(s) = unescape(s) }
        before = run.call
        returned = Iodine.patch_rack
        after = run.call
        owner = Rack::Utils.method(:unescape).owner.to_s
        error = begin; Rack::Utils.unescape("%zz"); rescue => e; "\#{e.class}: \#{e.message}"; end
        puts JSON.generate(same: before == after, returned: returned.to_s, owner: owner, error: error,
                           included: included.new.go("%41+"), before: before.inspect, after: after.inspect)
      RUBY
      out, err, status = in_subprocess(code)
      expect(status.success?).to be(true), err
      result = JSON.parse(out.lines.last)
      expect(result["same"]).to be(true), "#{result['before']}\n#{result['after']}"
      expect(result["returned"]).to eq("Rack::Utils")
      expect(result["owner"]).to eq("#<Class:Rack::Utils>")
      expect(result["error"]).to eq("RuntimeError: Malformed URL string - couldn't decode.")
      expect(result["included"]).to eq("A ")
    end
  end

  describe "Iodine.listen2http" do
    it "warns that it is deprecated and serves HTTP like listen(service: :http)" do
      port = ServerProcess.free_port
      code = <<~RUBY
        require "iodine"
        app = ->(_env) { [200, { "content-type" => "text/plain" }, ["via listen2http"]] }
        handler = Iodine.listen2http(port: #{port}, address: "127.0.0.1", handler: app)
        $stderr.puts "returned the app: \#{handler.equal?(app)}"
        Iodine.threads = 1
        Iodine.start
      RUBY
      server = ServerProcess.new(nil, script: ["-e", code], port: port)
      begin
        response = http_get(port, "/")
        expect(response.code).to eq("200")
        expect(response.body).to eq("via listen2http")
        expect(server.log).to include("WARNING: Iodine.listen2http is deprecated")
        expect(server.log).to include("returned the app: true")
      ensure
        server.stop
      end
    end

    it "takes a block as the handler" do
      port = ServerProcess.free_port
      code = <<~RUBY
        require "iodine"
        Iodine.listen2http(port: #{port}, address: "127.0.0.1") { |_env| [200, {}, ["block"]] }
        Iodine.threads = 1
        Iodine.start
      RUBY
      server = ServerProcess.new(nil, script: ["-e", code], port: port)
      begin
        expect(http_get(port, "/").body).to eq("block")
      ensure
        server.stop
      end
    end

    it "raises TypeError unless given a Hash" do
      expect { Iodine.listen2http("port 3000") }.to raise_error(TypeError)
    end
  end
end
